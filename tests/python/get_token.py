"""Gets an access token through the idbind token proxy with azure-identity.

Configured only by the environment a pod gets (AZURE_CLIENT_ID, AZURE_TENANT_ID,
AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, AZURE_KUBERNETES_TOKEN_PROXY,
AZURE_KUBERNETES_SNI_NAME, AZURE_KUBERNETES_CA_FILE). Prints one JSON line:
{"token": ..., "expires_on": ...}. Usage: get_token.py [scope] [count]
"""

import json
import sys

from azure.identity import WorkloadIdentityCredential


def main() -> None:
    scope = sys.argv[1] if len(sys.argv) > 1 else "https://management.azure.com/.default"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    credential = WorkloadIdentityCredential(enable_azure_proxy=True)
    token = None
    for _ in range(count):
        token = credential.get_token(scope)
    print(json.dumps({"token": token.token, "expires_on": token.expires_on}))


if __name__ == "__main__":
    main()
