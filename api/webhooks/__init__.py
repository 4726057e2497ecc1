"""Completion webhooks: a user's URL, signed events when their work ends, delivered through
the work queue (api.work) with retries, and a log of every attempt.

models (tables), secrets (made and kept encrypted), guard (where a webhook may point and
connect), events (the delivery rows a finish writes, in its transaction), delivery (one
attempt), service and router (the endpoints).
"""
