#!/usr/bin/env bash
# Makes sure a MariaDB answers on 127.0.0.1:3306 (root, empty password), starting the machine's
# mariadbd when it is installed but not running. Used by .ci/run and scripts/check-test.sh.
set -euo pipefail
ping() { mariadb-admin --protocol=tcp -h127.0.0.1 -P3306 -uroot ping >/dev/null 2>&1; }
if [ -n "${MYSQL_URL:-}" ]; then echo "MYSQL_URL is set: tests use it"; exit 0; fi
if ping; then echo "MariaDB answers on 127.0.0.1:3306"; exit 0; fi
if ! command -v mariadbd >/dev/null 2>&1; then
  echo "no MariaDB on 127.0.0.1:3306 and no mariadbd installed: MySQL tests will start their own or skip loudly" >&2
  exit 0
fi
echo "starting mariadbd"
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
for _ in $(seq 1 60); do
  if ping; then echo "MariaDB is up"; exit 0; fi
  sleep 1
done
echo "mariadbd did not answer within 60 s" >&2
exit 1
