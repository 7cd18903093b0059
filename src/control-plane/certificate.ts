/**
 * The parent's own TLS identity for the control plane: a fresh key pair and a
 * self-signed certificate made when a TLS listener starts. Runners are told
 * the certificate (in FLAME_PARENT) and pin it, so no CA has to be operated
 * and an impostor with a certificate of its own gets nothing.
 *
 * The certificate's structure is built with @peculiar/asn1-x509 (the X.509
 * ASN.1 schemas, no global polyfills) and signed with Node's own crypto; both
 * are loaded only when a TLS listener starts, so runners and plain-loopback
 * parents never pay for them. They are loaded with `require`: their CommonJS
 * build takes 30 ms here, their ES module build through Node's loader 51-61 ms
 * (a parent on Fly or Kubernetes, where TLS is the default, pays it once).
 */
import { generateKeyPairSync, randomBytes, sign, X509Certificate } from "node:crypto";
import { createRequire } from "node:module";
import type * as Asn1Schema from "@peculiar/asn1-schema";
import type * as Asn1X509 from "@peculiar/asn1-x509";

/** What a TLS listener serves and what runners need to trust it. */
export interface TlsIdentity {
  certificatePem: string;
  keyPem: string;
}

/** ecdsa-with-SHA256 (RFC 5758). */
const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
/** commonName. */
const COMMON_NAME = "2.5.4.3";
/** Long enough for any parent's lifetime between restarts; the key never leaves the process. */
const VALIDITY_DAYS = 397;

/**
 * A fresh ECDSA P-256 key and a self-signed certificate for it. Runners pin
 * the certificate itself, so by default it names no host; `hosts` (IP
 * addresses or DNS names) adds them as subjectAltName, with the key usages,
 * for clients that check the server's name (Go's, such as kubectl, ignore the
 * common name), as the Kubernetes emulator's serving certificate needs.
 */
export async function generateTlsIdentity(commonName = "flame-ts parent", hosts: string[] = []): Promise<TlsIdentity> {
  const load = createRequire(import.meta.url);
  const { AsnConvert, OctetString } = load("@peculiar/asn1-schema") as typeof Asn1Schema;
  const x509 = load("@peculiar/asn1-x509") as typeof Asn1X509;
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = new x509.Name([
    new x509.RelativeDistinguishedName([
      new x509.AttributeTypeAndValue({ type: COMMON_NAME, value: new x509.AttributeValue({ utf8String: commonName }) }),
    ]),
  ]);
  const extension = (extnID: string, critical: boolean, value: unknown) =>
    new x509.Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
  const signatureAlgorithm = new x509.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });
  const now = Date.now();
  const serial = randomBytes(16);
  // A positive INTEGER whose first byte is not 0: DER forbids a leading zero byte (a serial
  // that began with 0x00 made createSecureContext fail about 1 run in 200).
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const tbsCertificate = new x509.TBSCertificate({
    version: x509.Version.v3,
    serialNumber: new Uint8Array(serial).buffer,
    signature: signatureAlgorithm,
    issuer: name,
    subject: name,
    // A minute back: a runner whose clock is slightly behind must not see a certificate from the future.
    validity: new x509.Validity({ notBefore: new Date(now - 60_000), notAfter: new Date(now + VALIDITY_DAYS * 86_400_000) }),
    subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({ type: "spki", format: "der" }), x509.SubjectPublicKeyInfo),
    extensions: new x509.Extensions([
      // Its own trust anchor: runners (or a kubeconfig) give it as their only CA.
      extension(x509.id_ce_basicConstraints, true, new x509.BasicConstraints({ cA: true })),
      ...(hosts.length === 0
        ? []
        : [
            extension(x509.id_ce_keyUsage, true, new x509.KeyUsage(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign)),
            extension(x509.id_ce_extKeyUsage, false, new x509.ExtendedKeyUsage([x509.id_kp_serverAuth])),
            extension(
              x509.id_ce_subjectAltName,
              false,
              new x509.SubjectAlternativeName(
                hosts.map((host) => (/^[\d.]+$/.test(host) || host.includes(":") ? new x509.GeneralName({ iPAddress: host }) : new x509.GeneralName({ dNSName: host }))),
              ),
            ),
          ]),
    ]),
  });
  const signature = sign("sha256", Buffer.from(AsnConvert.serialize(tbsCertificate)), privateKey);
  const certificate = new x509.Certificate({ tbsCertificate, signatureAlgorithm, signatureValue: new Uint8Array(signature).buffer });
  return {
    certificatePem: toPem(Buffer.from(AsnConvert.serialize(certificate))),
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

/** The SHA-256 fingerprint of a PEM certificate, as Node's TLS reports a peer's (`AA:BB:...`). */
export function fingerprintOf(certificatePem: string): string {
  return new X509Certificate(certificatePem).fingerprint256;
}

function toPem(der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}
