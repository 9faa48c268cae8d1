#!/bin/sh
# Create the blog's key material for deploy/samples/blog:
#   privateKey, publicKey  ed25519 admin key pair (publicKey -> Secret kbs-auth-public-key)
#   https.key, https.crt   self-signed HTTPS certificate for kbs-service
#                          (-> Secrets kbs-https-key and kbs-https-certificate)
# Usage: blog-keys.sh [--force] [OUT_DIR]   (OUT_DIR defaults to deploy/samples/blog)
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

umask 077
openssl genpkey -algorithm ed25519 > privateKey
openssl pkey -in privateKey -pubout -out publicKey
openssl req -x509 -nodes -days 365 -newkey rsa:2048 -keyout https.key -out https.crt \
    -config "$blog_dir/kbs-service-509.conf" -passin pass: \
    -subj "/C=UK/ST=England/L=Bristol/O=Red Hat/OU=Development/CN=kbs-service"
echo "wrote privateKey publicKey https.key https.crt to $out_dir"
