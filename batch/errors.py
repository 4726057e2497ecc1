"""The batch job's one error: a usage or configuration problem that stops the whole job.

A bad image is never one of these: it is a failed manifest line with the function's error code.
"""

from __future__ import annotations


class BatchError(Exception):
    """The job cannot go on (bad arguments, an unreadable INPUT, an OUTPUT it may not write, an
    unknown user, a function that refuses the job's identity): exit 1 with this message."""
