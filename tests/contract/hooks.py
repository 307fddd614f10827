"""How schemathesis authenticates against redbank (loaded through SCHEMATHESIS_HOOKS).

Every operation runs with the operator's bearer token (admin at AAL2, so the admin operations are
exercised too, not only refused), except the two that end the caller's own session — signing out,
and revoking a session by the id the fuzzer may have read from the list: they get a fresh session
of their own each time.
"""
import os

import requests
import schemathesis

SIGN_OUT = {"method": "DELETE", "path": ["/api/v1/session", "/api/v1/sessions/{id}"]}


def _bearer(case, token):
    case.headers = case.headers or {}
    case.headers["Authorization"] = f"Bearer {token}"


@schemathesis.auth(refresh_interval=None).apply_to(**SIGN_OUT)
class ThrowawaySession:
    def get(self, case, ctx):
        res = requests.post(
            os.environ["REDBANK_BASE"] + "/api/v1/login",
            json={"username": "bob", "password": os.environ["REDBANK_BOB_PASSWORD"]},
            timeout=10,
        )
        res.raise_for_status()
        return res.json()["token"]

    def set(self, case, data, ctx):
        _bearer(case, data)


@schemathesis.auth(refresh_interval=None).skip_for(**SIGN_OUT)
class OperatorSession:
    def get(self, case, ctx):
        return os.environ["REDBANK_TOKEN"]

    def set(self, case, data, ctx):
        _bearer(case, data)
