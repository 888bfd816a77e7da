"""The e2e's workload: one token request through the idbind proxy with azure-identity.

Usage: get_token.py success|failure [scope]

Configured only by the environment the idbind webhook injects. Prints one JSON line: the outcome
and, on success, a few claims of the token (never the token itself). Exits 0 when the outcome is
the expected one, 1 otherwise.
"""

import base64
import json
import sys

from azure.core.exceptions import ClientAuthenticationError
from azure.identity import WorkloadIdentityCredential

CLAIMS = ("aud", "iss", "tid", "oid", "appid", "azp", "idtyp")


def claims(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main():
    expect = sys.argv[1] if len(sys.argv) > 1 else "success"
    scope = sys.argv[2] if len(sys.argv) > 2 else "https://management.azure.com/.default"
    try:
        token = WorkloadIdentityCredential(enable_azure_proxy=True).get_token(scope)
    except ClientAuthenticationError as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        print(json.dumps({"outcome": "failure", "error": first_line[:500]}))
        return 0 if expect == "failure" else 1
    c = claims(token.token)
    print(json.dumps({"outcome": "success", "claims": {k: c.get(k) for k in CLAIMS}, "expires_on": token.expires_on}))
    return 0 if expect == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
