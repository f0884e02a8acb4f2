#!/usr/bin/env bash
# Make sure Redis and PostgreSQL answer for the tests; start (or install) them when they do not.
set -u
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
say() { printf 'services: %s\n' "$*"; }

redis_up() { (exec 3<>/dev/tcp/$REDIS_HOST/$REDIS_PORT && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if redis_up; then
  say "redis answering at $REDIS_HOST:$REDIS_PORT"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1 \
      || { say "cannot install redis-server: install it (apt-get install redis-server) or set TEST_REDIS_URL"; exit 1; }
  fi
  mkdir -p /tmp/dispatcher-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" --appendonly no \
    --dir /tmp/dispatcher-redis --logfile /tmp/dispatcher-redis/redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up && say "started redis at $REDIS_HOST:$REDIS_PORT" || { say "redis did not start"; exit 1; }
fi

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if [ "${DISPATCHER_SKIP_POSTGRES:-0}" = 1 ]; then
  say "DISPATCHER_SKIP_POSTGRES=1: PostgreSQL tests will be skipped"
elif pg_up; then
  say "postgresql answering at 127.0.0.1:5432"
else
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "installing postgresql"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
      || { say "cannot install postgresql; set DISPATCHER_SKIP_POSTGRES=1 to run without it"; exit 1; }
  fi
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$ver" ]; then say "no PostgreSQL cluster found"; exit 1; fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start
  for _ in $(seq 100); do pg_up && break; sleep 0.1; done
  pg_up || { say "postgresql did not start"; exit 1; }
  say "started postgresql $ver"
fi
# The tests use database `test` as user postgres over TCP; create it when missing.
if [ "${DISPATCHER_SKIP_POSTGRES:-0}" != 1 ]; then
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    su postgres -c "psql -c \"ALTER USER postgres PASSWORD NULL\"" >/dev/null 2>&1 || true
    su postgres -c "createdb test" >/dev/null 2>&1 || createdb -h 127.0.0.1 -U postgres test >/dev/null 2>&1 || true
    psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1 \
      || { say "cannot connect to postgresql://postgres@127.0.0.1:5432/test (trust auth expected); set TEST_POSTGRES_URL"; exit 1; }
  fi
fi
exit 0
