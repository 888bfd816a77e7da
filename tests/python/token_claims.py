"""Gets an access token the way a pod does and prints its claims, never the token.

Uses azure-identity's WorkloadIdentityCredential with enable_azure_proxy=True, configured only by
the environment the idbind webhook injects (AZURE_CLIENT_ID, AZURE_TENANT_ID,
AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, AZURE_KUBERNETES_TOKEN_PROXY,
AZURE_KUBERNETES_SNI_NAME, AZURE_KUBERNETES_CA_FILE).

Usage: token_claims.py [scope]
Prints one JSON line and exits 0:  {"ok": true, "expires_on": <epoch>, "claims": {...}}
or exits 1:                        {"ok": false, "error": "<type>: <message>"}
"""

import base64
import json
import sys

from azure.identity import WorkloadIdentityCredential


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def main() -> int:
    scope = sys.argv[1] if len(sys.argv) > 1 else "https://management.azure.com/.default"
    try:
        credential = WorkloadIdentityCredential(enable_azure_proxy=True)
        token = credential.get_token(scope)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps({"ok": True, "expires_on": token.expires_on, "claims": claims_of(token.token)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
