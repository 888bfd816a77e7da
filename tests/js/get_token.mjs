// Gets an access token through the idbind token proxy with @azure/identity.
//
// Configured only by the environment a pod gets (AZURE_CLIENT_ID, AZURE_TENANT_ID,
// AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST, AZURE_KUBERNETES_TOKEN_PROXY,
// AZURE_KUBERNETES_SNI_NAME, AZURE_KUBERNETES_CA_FILE). Prints one JSON line:
// {"token": ..., "expiresOnTimestamp": ...}. Usage: node get_token.mjs [scope]
import { WorkloadIdentityCredential } from "@azure/identity";

const scope = process.argv[2] ?? "https://management.azure.com/.default";
try {
  const credential = new WorkloadIdentityCredential({ enableAzureProxy: true });
  const token = await credential.getToken(scope);
  console.log(JSON.stringify({ token: token.token, expiresOnTimestamp: token.expiresOnTimestamp }));
} catch (e) {
  console.error(`${e.name}: ${e.message}`);
  process.exit(1);
}
