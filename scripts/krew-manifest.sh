#!/usr/bin/env bash
# Prints the krew plugin manifest of kubectl-certop for a release archive.
#   krew-manifest.sh VERSION URL ARCHIVE
# VERSION: v-prefixed semver (v0.1.0); URL: where ARCHIVE will be downloaded
# from; ARCHIVE: a .tar.gz holding kubectl-certop (make dist).
set -euo pipefail
version="${1:?VERSION, e.g. v0.1.0}"
url="${2:?download URL of the archive}"
archive="${3:?the archive made by make dist}"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "VERSION must look like v0.1.0" >&2; exit 1; }
tar -tzf "$archive" | grep -qx 'kubectl-certop' || { echo "$archive holds no kubectl-certop" >&2; exit 1; }
sha="$(sha256sum "$archive" | cut -d' ' -f1)"
cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: certop
spec:
  version: $version
  homepage: https://certop.dev
  shortDescription: Status, renewal, revocation and expiry of certop certificates
  description: |
    The kubectl plugin of certop, the operator that runs a cluster's
    internal PKI: status of ClusterCertificates and CertificateAuthorities,
    renew now, revoke with a CRL, kubeadm-style check-expiration, inspect
    a Secret's certificate, shell completion.
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: amd64
      uri: $url
      sha256: $sha
      bin: kubectl-certop
      files:
        - from: kubectl-certop
          to: .
YAML
