#!/usr/bin/env bash
# Builds the local MariaDB image the harness's docker provider runs (no registry needed): a
# Debian bookworm minbase rootfs with mariadb-server and an initialised datadir, imported as
# $PODGRANT_MYSQL_IMAGE (default podgrant/mariadb:10.11-local). Skips when the tag exists.
#
# The image's entrypoint runs mariadbd as root on --port=$MYSQL_TCP_PORT (default 3306),
# --bind-address=$MYSQL_BIND_ADDRESS (default 127.0.0.1), then any extra arguments; root has no
# password and may connect from localhost, 127.0.0.1 and ::1. Run it with --network host.
# Needs root, debootstrap, a Docker daemon and a reachable Debian mirror ($DEBIAN_MIRROR).
set -euo pipefail

image="${PODGRANT_MYSQL_IMAGE:-podgrant/mariadb:10.11-local}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
say() { printf '==> [build-mariadb-image] %s\n' "$*" >&2; }

if docker image inspect "$image" >/dev/null 2>&1; then
  say "$image exists: nothing to build"
  exit 0
fi
command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
docker info >/dev/null 2>&1 || { say "no Docker daemon answers"; exit 1; }

# The rootfs is a few hundred MB: build it on /work (the big disk) when there is one.
base="${PODGRANT_IMAGE_BUILD_DIR:-/work}"
[ -d "$base" ] && [ -w "$base" ] || base="${TMPDIR:-/tmp}"
root="$(mktemp -d "$base/podgrant-rootfs.XXXXXX")"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

start=$(date +%s)
say "debootstrap bookworm (minbase) into $root from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
  tail -20 "$root.debootstrap.log" >&2
  rm -f "$root.debootstrap.log"
  exit 1
}
rm -f "$root.debootstrap.log"

say "installing mariadb-server in the rootfs"
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends mariadb-server >"$root.apt.log" 2>&1 || {
  tail -20 "$root.apt.log" >&2
  rm -f "$root.apt.log"
  exit 1
}
rm -f "$root.apt.log"
umount "$root/proc"

say "initialising the datadir"
# mariadb-install-db resolves `localhost` (Docker replaces this file in the container).
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
chroot "$root" mariadb-install-db --no-defaults --user=root --auth-root-authentication-method=normal \
  --datadir=/var/lib/podgrant-mysql --skip-test-db >"$root.install-db.log" 2>&1 || {
  tail -20 "$root.install-db.log" >&2
  rm -f "$root.install-db.log"
  exit 1
}
rm -f "$root.install-db.log"
mkdir -p "$root/var/lib/podgrant-mysql/test" "$root/run/mysqld"

cat >"$root/usr/local/bin/podgrant-mariadb" <<'EOF'
#!/bin/sh
# Entrypoint of the podgrant test image: the datadir was initialised at build time.
set -e
exec mariadbd --no-defaults --user=root --datadir=/var/lib/podgrant-mysql \
  --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
  --port="${MYSQL_TCP_PORT:-3306}" --bind-address="${MYSQL_BIND_ADDRESS:-127.0.0.1}" \
  --log-error=/dev/stderr "$@"
EOF
chmod +x "$root/usr/local/bin/podgrant-mariadb"

# Smaller image: no package caches, docs or locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root/usr/sbin/policy-rc.d"

version="$(chroot "$root" mariadbd --version)"
say "importing as $image ($version)"
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/podgrant-mariadb"]' \
  --change 'ENV MYSQL_TCP_PORT=3306 MYSQL_BIND_ADDRESS=127.0.0.1' \
  --message "podgrant test MariaDB: $version" - "$image" >/dev/null
say "built $image in $(($(date +%s) - start)) s"
