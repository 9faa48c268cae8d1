#!/bin/sh
# Create the blog's key material for deploy/samples/blog:
#   privateKey, publicKey  ed25519 admin key pair (publicKey -> Secret kbs-auth-public-key)
#   https.key, https.crt   self-signed HTTPS certificate for kbs-service
#                          (-> Secrets kbs-https-key and kbs-https-certificate)
# Usage: blog-keys.sh [--force] [OUT_DIR]   (OUT_DIR defaults to deploy/samples/blog;
#                                            deploy/samples/microservices uses the same files)
set -eu

force=no
if [ "${1:-}" = "--force" ]; then
    force=yes
    shift
fi
blog_dir=$(cd "$(dirname "$0")/../samples/blog" && pwd)
out_dir=${1:-$blog_dir}
mkdir -p "$out_dir"
cd "$out_dir"

if [ -e privateKey ] && [ "$force" = no ]; then
    echo "$out_dir/privateKey exists; pass --force to replace the key material" >&2
    exit 1
fi

# Generating a key, openssl draws progress characters on stderr: show stderr only when the
# command fails or says something besides them.
keygen() {
    if out=$(openssl genpkey "$@" 2>&1); then
        if [ -n "$(printf '%s' "$out" | tr -d '.+*\n')" ]; then
            printf '%s\n' "$out" >&2
        fi
    else
        printf '%s\n' "$out" >&2
        return 1
    fi
}

umask 077
keygen -algorithm ed25519 -out privateKey
openssl pkey -in privateKey -pubout -out publicKey
keygen -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out https.key
openssl req -x509 -days 365 -key https.key -out https.crt \
    -config "$blog_dir/kbs-service-509.conf" \
    -subj "/C=UK/ST=England/L=Bristol/O=Red Hat/OU=Development/CN=kbs-service"
echo "wrote privateKey publicKey https.key https.crt to $out_dir"
