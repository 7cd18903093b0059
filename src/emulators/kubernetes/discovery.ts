/**
 * Discovery: the documents kubectl and client-go read before anything else
 * to learn which groups, versions and resources the server has (`/api`,
 * `/api/v1`, `/apis`, `/apis/authorization.k8s.io/v1`) and its `/version`.
 * The emulator answers the legacy, unaggregated forms (plain
 * `application/json`), which clients fall back to when the server does not
 * offer aggregated discovery.
 */
import { RESOURCES, SUBRESOURCES } from "./resources.js";

/** The Kubernetes version the emulator says it is. */
export const EMULATED_VERSION = { major: "1", minor: "32", gitVersion: "v1.32.0-flame-ts-emulator" };

const AUTHORIZATION_GROUP = { groupVersion: "authorization.k8s.io/v1", version: "v1" };

/** The discovery document at `path`, or undefined when it is not one. */
export function discoveryDocument(path: string, serverAddress: string): Record<string, unknown> | undefined {
  switch (path) {
    case "/version":
      return {
        ...EMULATED_VERSION,
        gitCommit: "0000000000000000000000000000000000000000",
        gitTreeState: "clean",
        buildDate: "2026-01-01T00:00:00Z",
        goVersion: "go1.23.0",
        compiler: "gc",
        platform: `linux/${process.arch === "x64" ? "amd64" : process.arch}`,
      };
    case "/api":
      return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }] };
    case "/api/v1":
      return {
        kind: "APIResourceList",
        groupVersion: "v1",
        resources: [
          ...Object.values(RESOURCES).map((resource) => ({
            name: resource.name,
            singularName: resource.singular,
            namespaced: resource.namespaced,
            kind: resource.kind,
            verbs: resource.verbs,
            ...(resource.shortNames ? { shortNames: resource.shortNames } : {}),
            ...(resource.name === "pods" ? { categories: ["all"] } : {}),
            storageVersionHash: Buffer.from(resource.kind).toString("base64").slice(0, 11),
          })),
          ...SUBRESOURCES.map((subresource) => ({ name: subresource.name, singularName: "", namespaced: subresource.namespaced, kind: subresource.kind, verbs: subresource.verbs })),
        ],
      };
    case "/apis":
      return {
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [{ name: "authorization.k8s.io", versions: [AUTHORIZATION_GROUP], preferredVersion: AUTHORIZATION_GROUP }],
      };
    case "/apis/authorization.k8s.io":
      return { kind: "APIGroup", apiVersion: "v1", name: "authorization.k8s.io", versions: [AUTHORIZATION_GROUP], preferredVersion: AUTHORIZATION_GROUP };
    case "/apis/authorization.k8s.io/v1":
      return {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: "authorization.k8s.io/v1",
        resources: [{ name: "selfsubjectaccessreviews", singularName: "selfsubjectaccessreview", namespaced: false, kind: "SelfSubjectAccessReview", verbs: ["create"] }],
      };
    default:
      return undefined;
  }
}

/** Paths anyone may read, authenticated or not, as the system:public-info-viewer role allows. */
export function isPublicPath(path: string): boolean {
  return ["/version", "/healthz", "/livez", "/readyz"].includes(path);
}
