"""Forwarding uploads to the Cloud Function: one shared HTTP client, ID tokens, retries."""

from api.forwarding.client import FunctionClient, FunctionResult, build_function_client

__all__ = ["FunctionClient", "FunctionResult", "build_function_client"]
