/**
 * The emulator's serving certificate: self-signed, made per emulator, valid
 * for 127.0.0.1 and localhost. The control plane's own generator
 * (src/control-plane/certificate.ts) makes a certificate with a common name
 * only, which runners pin by fingerprint; kubectl and client-go are Go TLS
 * clients, which check the server's address against subjectAltName and
 * ignore the common name, so this one carries the SAN they need.
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";

/** A key and its self-signed certificate, in PEM. */
export interface ServingCertificate {
  certificatePem: string;
  keyPem: string;
}

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
const COMMON_NAME = "2.5.4.3";
const VALIDITY_DAYS = 365;

/** A fresh ECDSA P-256 key and a certificate for `hosts` (IP addresses or DNS names), its own CA. */
export async function generateServingCertificate(hosts = ["127.0.0.1", "localhost"]): Promise<ServingCertificate> {
  const [{ AsnConvert, OctetString }, x509] = await Promise.all([import("@peculiar/asn1-schema"), import("@peculiar/asn1-x509")]);
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = new x509.Name([
    new x509.RelativeDistinguishedName([
      new x509.AttributeTypeAndValue({ type: COMMON_NAME, value: new x509.AttributeValue({ utf8String: "flame-ts kubernetes emulator" }) }),
    ]),
  ]);
  const extension = (extnID: string, critical: boolean, value: unknown) =>
    new x509.Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
  const alternativeNames = hosts.map((host) =>
    /^[\d.]+$/.test(host) || host.includes(":") ? new x509.GeneralName({ iPAddress: host }) : new x509.GeneralName({ dNSName: host }),
  );
  const signatureAlgorithm = new x509.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });
  const serial = randomBytes(16);
  // A positive INTEGER whose first byte is not zero: DER forbids a needless leading zero, and OpenSSL
  // refuses such a certificate ("illegal padding"), which a random first byte of 0x00 would make 1 time in 512.
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const now = Date.now();
  const tbsCertificate = new x509.TBSCertificate({
    version: x509.Version.v3,
    serialNumber: new Uint8Array(serial).buffer,
    signature: signatureAlgorithm,
    issuer: name,
    subject: name,
    // A minute back, for a client whose clock is slightly behind.
    validity: new x509.Validity({ notBefore: new Date(now - 60_000), notAfter: new Date(now + VALIDITY_DAYS * 86_400_000) }),
    subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({ type: "spki", format: "der" }), x509.SubjectPublicKeyInfo),
    extensions: new x509.Extensions([
      // Its own trust anchor: the kubeconfig gives it as certificate-authority-data.
      extension(x509.id_ce_basicConstraints, true, new x509.BasicConstraints({ cA: true })),
      extension(x509.id_ce_keyUsage, true, new x509.KeyUsage(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign)),
      extension(x509.id_ce_extKeyUsage, false, new x509.ExtendedKeyUsage([x509.id_kp_serverAuth])),
      extension(x509.id_ce_subjectAltName, false, new x509.SubjectAlternativeName(alternativeNames)),
    ]),
  });
  const signature = sign("sha256", Buffer.from(AsnConvert.serialize(tbsCertificate)), privateKey);
  const certificate = new x509.Certificate({ tbsCertificate, signatureAlgorithm, signatureValue: new Uint8Array(signature).buffer });
  const der = Buffer.from(AsnConvert.serialize(certificate));
  return {
    certificatePem: `-----BEGIN CERTIFICATE-----\n${(der.toString("base64").match(/.{1,64}/g) ?? []).join("\n")}\n-----END CERTIFICATE-----\n`,
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}
