#!/usr/bin/env bash
# Install the Debian packages the local infrastructure needs, if any is missing:
#   postgresql (server binaries), openssh-server (sshd), a Java 17+ runtime and Maven (Kafka).
# As root: apt-get (update only when something is missing). Otherwise: say what to install
# and fail. Package scripts are kept from starting system-wide services: we run our own.
set -euo pipefail

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x "${ORDERFLOW_SSHD:-/usr/sbin/sshd}" ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [ -z "${JAVA_HOME:-}" ] && ! command -v java >/dev/null; then
  missing+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null || missing+=(maven)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps-system: postgresql, openssh-server, java and maven are present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps-system: missing Debian packages: ${missing[*]}" >&2
  echo "deps-system: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "deps-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary: keep package scripts from starting services\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
echo "deps-system: done"
