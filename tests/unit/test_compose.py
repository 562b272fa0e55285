"""Static checks of the compose stacks: the root ``docker-compose.yml`` (the local Fabstir
network) and ``examples/compose-sidecar/docker-compose.yml`` (apps beside p2pd sidecars).

No Docker engine is needed: each file is parsed with PyYAML and every ``fabstir-sidecar`` call
in it (commands, entrypoint scripts, healthchecks) is checked against the real CLI, every
``P2P_*`` variable against the configuration, and the images against ``daemon/Dockerfile``
and ``daemon/build_images.py``. ``tests/containers/`` runs the stacks where an engine exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from fabstir_sidecar import ENV_VARS, NodeConfig
from fabstir_sidecar.cli.app import app
from fabstir_sidecar.core.multiaddr import split_peer_multiaddr
from fabstir_sidecar.daemon.binary import P2PD_SHA256
from fabstir_sidecar.daemon.identity import generate_identity

ROOT = Path(__file__).resolve().parents[2]
DEMO_FILE = ROOT / "docker-compose.yml"
SIDECAR_FILE = ROOT / "examples" / "compose-sidecar" / "docker-compose.yml"
DOCKERFILE = ROOT / "daemon" / "Dockerfile"
BUILD_SCRIPT = ROOT / "daemon" / "build_images.py"
# daemon/build_images.py: target -> tag. Compose never builds or pulls them.
SIDECAR_IMAGE, PYTHON_IMAGE, P2PD_IMAGE, CURL_IMAGE = (
    "fabstir-sidecar:local",
    "fabstir-python:local",
    "fabstir-p2pd:local",
    "fabstir-curl:local",
)
IMAGES = {"sidecar": SIDECAR_IMAGE, "library": PYTHON_IMAGE, "p2pd": P2PD_IMAGE, "curl": CURL_IMAGE}

CLI = "fabstir-sidecar"
IMAGE_ENTRYPOINT = [CLI]  # daemon/Dockerfile: ENTRYPOINT ["fabstir-sidecar"]
IMAGE_CMD = ["node", "--json"]  # daemon/Dockerfile: CMD ["node", "--json"]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash"}
SHELL_OPERATORS = set("();<>|&")
P2P_VAR = re.compile(r"\bP2P_[A-Z0-9_]+\b")
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
# The public IPFS bootstrap list (go-libp2p/kubo defaults): never part of a local network.
PUBLIC_BOOTSTRAP_MARKERS = (
    "bootstrap.libp2p.io",
    "/dnsaddr/",
    "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
)

# Keys of the compose specification (github.com/compose-spec/compose-spec), to catch typos
# such as `healtcheck`, which compose would reject. Extend when the file needs a new one.
TOP_LEVEL_KEYS = {
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs",
    "models",
}  # fmt: skip
SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
    "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus",
    "cpuset", "credential_spec", "depends_on", "deploy", "develop", "device_cgroup_rules",
    "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add",
    "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links",
    "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness",
    "memswap_limit", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid",
    "pids_limit", "platform", "ports", "post_start", "pre_stop", "privileged", "profiles",
    "pull_policy", "read_only", "restart", "runtime", "scale", "secrets", "security_opt",
    "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls",
    "tmpfs", "tty", "ulimits", "user", "userns_mode", "uts", "volumes", "volumes_from",
    "working_dir",
}  # fmt: skip
BUILD_KEYS = {
    "context", "dockerfile", "dockerfile_inline", "args", "ssh", "labels", "cache_from",
    "cache_to", "no_cache", "additional_contexts", "network", "pull", "target", "shm_size",
    "extra_hosts", "isolation", "privileged", "secrets", "tags", "ulimits", "platforms",
    "entitlements",
}  # fmt: skip
HEALTHCHECK_KEYS = {
    "test", "interval", "timeout", "retries", "start_period", "start_interval", "disable",
}  # fmt: skip
DEPENDS_ON_KEYS = {"condition", "restart", "required"}
RESTART_POLICIES = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")


# ---------------------------------------------------------------------------- helpers


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path} is not a mapping"
    return doc


def _services_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = doc.get("services")
    assert isinstance(found, dict) and found, "the compose file defines no services"
    for name, service in found.items():
        assert isinstance(service, dict), f"service {name!r} is not a mapping"
    return found


@pytest.fixture(scope="module", params=[DEMO_FILE, SIDECAR_FILE], ids=["demo", "sidecar"])
def compose_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture(scope="module")
def compose(compose_file: Path) -> dict[str, Any]:
    return _load(compose_file)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _services_of(compose)


def _as_list(value: Any) -> list[str]:
    """A compose command/entrypoint (string or list) as an argv list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list), f"expected a string or a list, got {value!r}"
    return [str(item) for item in value]


def _argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: setting ``entrypoint`` also clears the image's CMD."""
    if "entrypoint" in service:
        return _as_list(service["entrypoint"]) + _as_list(service.get("command"))
    if service.get("image") == P2PD_IMAGE:  # ENTRYPOINT ["/usr/local/bin/p2pd"]
        return ["p2pd", *_as_list(service.get("command"))]
    if service.get("image") == PYTHON_IMAGE:  # CMD ["python3"], no entrypoint
        return _as_list(service.get("command")) or ["python3"]
    command = _as_list(service["command"]) if "command" in service else IMAGE_CMD
    return IMAGE_ENTRYPOINT + command


def _shell_calls(script: str, positional: list[str]) -> list[list[str]]:
    """The argv of every ``fabstir-sidecar`` call in a shell script.

    ``"$$@"`` (or ``"$@"``) right after the command stands for ``positional`` (the words
    after the script's ``$0``). Arguments end at a shell operator (``)``, ``;``, ``|``, ``>``).
    """
    calls: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        if CLI not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token != CLI and not token.endswith("/" + CLI):
                continue
            args: list[str] = []
            for arg in tokens[i + 1 :]:
                if set(arg) <= SHELL_OPERATORS:
                    break
                if arg in ("$$@", "$@"):
                    args.extend(positional)
                else:
                    args.append(arg)
            calls.append(args)
    return calls


def _calls_in_argv(argv: list[str]) -> list[list[str]]:
    """``fabstir-sidecar`` calls made by a container/healthcheck argv (direct or via sh -c)."""
    if not argv:
        return []
    if argv[0] == CLI or argv[0].endswith("/" + CLI):
        return [argv[1:]]
    if argv[0] in SHELLS:
        for i, arg in enumerate(argv[1:], start=1):
            if arg.startswith("-") and "c" in arg and i + 1 < len(argv):
                # sh -c SCRIPT [$0 [$1 ...]]
                return _shell_calls(argv[i + 1], argv[i + 3 :])
    return []


def _healthcheck_calls(service: dict[str, Any]) -> list[list[str]]:
    test = (service.get("healthcheck") or {}).get("test")
    if test is None:
        return []
    if isinstance(test, str):
        return _shell_calls(test, [])
    kind, *rest = test
    if kind == "CMD-SHELL":
        return _shell_calls(" ".join(rest), [])
    if kind == "CMD":
        return _calls_in_argv(rest)
    return []


def _all_calls(services: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    calls = []
    for name, service in services.items():
        for args in _calls_in_argv(_argv(service)) + _healthcheck_calls(service):
            calls.append((name, args))
    return calls


def _subcommand(args: list[str]) -> tuple[list[str], list[str]]:
    """Split a call into (command path, its arguments); global options are checked here."""
    group = typer.main.get_command(app)
    global_opts = {opt for param in group.params for opt in param.opts}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        option = args[i].split("=", 1)[0]
        assert option in global_opts, f"unknown global option {option!r} in {args}"
        i += 1 if "=" in args[i] else 2
    assert i < len(args), f"no command in fabstir-sidecar call {args}"
    path = [args[i]]
    command: Any = group.commands.get(args[i])
    assert command is not None, f"fabstir-sidecar has no command {args[i]!r} (call: {args})"
    i += 1
    while hasattr(command, "commands") and i < len(args):  # e.g. `daemon install`
        command = command.commands.get(args[i])
        assert command is not None, f"fabstir-sidecar has no command {[*path, args[i]]}"
        path.append(args[i])
        i += 1
    return path, args[i:]


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """The app's callback configures logging (a root handler on the runner's stderr): undo it,
    so that nothing logs to a closed stream later."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {name: logging.getLogger(name).level for name in ("fabstir_sidecar.p2pd", "p2pclient")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, named_level in named.items():
            logging.getLogger(name).setLevel(named_level)


@pytest.fixture(scope="module")
def cli_help() -> dict[tuple[str, ...], str]:
    """``fabstir-sidecar <command...> --help`` output, per command path (see _help_text)."""
    return {}


def _help_text(cache: dict[tuple[str, ...], str], path: list[str]) -> str:
    key = tuple(path)
    if key not in cache:
        with _logging_restored():
            result = CliRunner().invoke(
                app, [*path, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
            )
        usage = f"fabstir-sidecar {' '.join(path)} --help"
        assert result.exit_code == 0, f"`{usage}` failed:\n{result.output}"
        cache[key] = result.output
    return cache[key]


def _node_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------ tests


def test_compose_file_parses_and_has_the_network() -> None:
    services = _services_of(_load(DEMO_FILE))
    commands = {
        name: [args[0] for args in _calls_in_argv(_argv(s))] for name, s in services.items()
    }
    # Hosts and client dial /dns4/bootstrap/...: the service must be called exactly that.
    assert "bootstrap" in commands["bootstrap"], "service 'bootstrap' must run `bootstrap`"
    hosts = [name for name, cmds in commands.items() if "host" in cmds]
    assert len(hosts) >= 2, f"expected two host services, got {hosts}"
    clients = [name for name, cmds in commands.items() if {"find", "job"} <= set(cmds)]
    assert clients, "no client service runs `find` then `job`"


def test_services_use_the_offline_built_images(services: dict[str, dict[str, Any]]) -> None:
    script = BUILD_SCRIPT.read_text(encoding="utf-8")
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    for target, image in IMAGES.items():
        assert f'"{target}": "{image}"' in script, f"build_images.py does not tag {image}"
        assert re.search(rf"^FROM .+ AS {target}$", dockerfile, re.M), f"no stage {target}"
    for name, service in services.items():
        image = service.get("image")
        assert image in IMAGES.values(), f"{name}: image {image!r}"
        assert "build" not in service, f"{name}: images are built offline, never by compose"
        assert service.get("pull_policy") == "never", f"{name}: a local image: never pull it"
        if _calls_in_argv(_argv(service)):
            assert image == SIDECAR_IMAGE, f"{name} runs fabstir-sidecar: needs {SIDECAR_IMAGE}"


def _option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"p2pd without {flag}: {argv}"
    return argv[argv.index(flag) + 1]


def test_sidecar_apps_attach_to_their_own_p2pd() -> None:
    services = _services_of(_load(SIDECAR_FILE))
    sidecars = {n: s for n, s in services.items() if s.get("image") == P2PD_IMAGE}
    apps = {n: s for n, s in services.items() if s.get("image") == PYTHON_IMAGE}
    assert len(sidecars) == len(apps) == 2, (sidecars, apps)
    for name, sidecar in sidecars.items():
        argv = _argv(sidecar)
        # p2pd's defaults would use the public IPFS bootstrap list: always override it.
        assert _option(argv, "-bootstrapPeers") == "", f"{name}: {argv}"
        assert "-b" not in argv, f"{name}: bootstrapping is done from Python"
    forms = set()
    for name, app_service in apps.items():
        env = _node_env(app_service)
        cfg = NodeConfig.load(env=env)
        assert cfg.control_addr is not None, f"{name}: no P2P_DAEMON_ADDR"
        assert "/app/app.py" in _argv(app_service), name
        mode = app_service.get("network_mode", "")
        if mode.startswith("service:"):
            sidecar = sidecars[mode.removeprefix("service:")]
            assert cfg.control_addr.startswith("/ip4/127.0.0.1/tcp/"), f"{name}: {cfg}"
            forms.add("netns")
        else:
            (sidecar,) = (
                s for s in sidecars.values() if _option(_argv(s), "-listen") == cfg.control_addr
            )
            assert cfg.handler_addr is not None, f"{name}: the daemon must reach the app"
            shared = {v.split(":")[1] for v in app_service["volumes"]} & {
                v.split(":")[1] for v in sidecar["volumes"]
            }
            for addr in (cfg.control_addr, cfg.handler_addr):
                assert any(addr.startswith(f"/unix{d}/") for d in shared), f"{name}: {addr}"
            forms.add("volume")
        assert _option(_argv(sidecar), "-listen") == cfg.control_addr, name
        assert set(app_service["depends_on"]) >= {"bootstrap"}, name
    assert forms == {"netns", "volume"}


def test_cli_calls_exist_in_the_real_cli(
    services: dict[str, dict[str, Any]], cli_help: dict[tuple[str, ...], str]
) -> None:
    calls = _all_calls(services)
    used = {args[0] for _, args in calls if args}
    assert {"bootstrap", "host", "identity"} <= used, used
    for service, args in calls:
        path, rest = _subcommand(args)
        where = f"{service}: fabstir-sidecar {' '.join(args)}"
        known = set(OPTION.findall(_help_text(cli_help, path)))
        for arg in rest:
            option = arg.split("=", 1)[0]
            if option.startswith("-"):
                assert option in known, f"{where}: `{' '.join(path)}` has no option {option}"
        # The arguments parse: required options present, values of the right type.
        command: Any = typer.main.get_command(app)
        for part in path:
            command = command.commands[part]
        try:
            command.make_context(" ".join(path), list(rest))
        except Exception as exc:  # the CLI's usage errors (click/typer exception classes)
            pytest.fail(f"{where}: does not parse: {exc}")


def test_p2p_variables_are_known_and_valid(
    compose_file: Path, services: dict[str, dict[str, Any]]
) -> None:
    text = compose_file.read_text(encoding="utf-8")
    used = set(P2P_VAR.findall(text))
    assert used, "the stack is expected to be configured with P2P_* variables"
    unknown = used - set(ENV_VARS)
    assert not unknown, f"unknown P2P_* variables {sorted(unknown)}; known: {sorted(ENV_VARS)}"
    for name, service in services.items():
        env = {k: v for k, v in _node_env(service).items() if k.startswith("P2P_")}
        if not env:
            continue
        # The same parser as every node: JSON lists, booleans, DHT modes, multiaddrs.
        cfg = NodeConfig.load(env=env)
        if "P2P_LISTEN_ADDRESSES" in env:
            assert cfg.listen == ("/ip4/0.0.0.0/tcp/4001",), f"{name}: {cfg.listen}"
            assert cfg.enable_mdns is False, f"{name}: discovery goes through the bootstrap node"


def test_bootstrap_multiaddrs_name_the_bootstrap_service(
    compose_file: Path, services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    text = compose_file.read_text(encoding="utf-8")
    for public in PUBLIC_BOOTSTRAP_MARKERS:
        assert public not in text, f"public IPFS bootstrap peer {public!r} in the compose file"
    templates = re.findall(r"/dns4/[^\s\"'\\]+/p2p/", text)
    assert templates, "no /dns4/<service>/tcp/<port>/p2p/<peer id> bootstrap address"
    peer_id = generate_identity(tmp_path / "bootstrap.key")
    for template in templates:
        address, got = split_peer_multiaddr(template + peer_id, name="bootstrap")
        assert got == peer_id
        host = address.split("/")[2]
        assert host in services, f"{template}: {host!r} is not a service of this file"
        assert address == f"/dns4/{host}/tcp/4001", address


def test_p2p_bootstrap_nodes_export_is_a_valid_json_list(
    compose_file: Path, tmp_path: Path
) -> None:
    """Run the entrypoint's `export P2P_BOOTSTRAP_NODES=...` in a real shell and parse it."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX shell to evaluate the export line")
    text = compose_file.read_text(encoding="utf-8").replace("$$", "$")
    exports = re.findall(r"export (P2P_BOOTSTRAP_NODES=.*)", text)
    assert exports, "no `export P2P_BOOTSTRAP_NODES=...` in the compose file"
    peer_id = generate_identity(tmp_path / "bootstrap.key")
    for export in exports:
        script = f'peer_id={peer_id}; {export}; printf "%s" "$P2P_BOOTSTRAP_NODES"'
        value = subprocess.run(
            [sh, "-euc", script], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        assert json.loads(value) == [f"/dns4/bootstrap/tcp/4001/p2p/{peer_id}"]
        cfg = NodeConfig.load(env={"P2P_BOOTSTRAP_NODES": value})
        assert cfg.bootstrap == (f"/dns4/bootstrap/tcp/4001/p2p/{peer_id}",)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_dollar_signs_are_escaped_for_compose(compose: dict[str, Any]) -> None:
    """Compose fills a single `$` from the host's environment; the shell must get `$$`."""
    for value in _strings(compose):
        assert "$" not in value.replace("$$", ""), f"unescaped $ in {value!r}"


def test_depends_on_references_exist(services: dict[str, dict[str, Any]]) -> None:
    graph: dict[str, list[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        graph[name] = list(depends)
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name, f"{name} depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in CONDITIONS, f"{name} -> {dep}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot step"

    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        assert state.get(node) != "active", f"depends_on cycle: {' -> '.join([*trail, node])}"
        state[node] = "active"
        for dep in graph[node]:
            visit(dep, [*trail, node])
        state[node] = "done"

    for name in graph:
        visit(name, [])


def test_dockerfile_pin_is_the_enforced_p2pd_sha256() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    pins = set(re.findall(r"\b[0-9a-f]{64}\b", text))
    assert pins == {P2PD_SHA256}, f"daemon/Dockerfile pins {pins}, binary.py has {P2PD_SHA256}"
    assert re.search(r"sha256sum -c", text), "the Dockerfile no longer checks p2pd"


def _unknown(keys: Any, known: set[str]) -> list[str]:
    return sorted(str(k) for k in keys if k not in known and not str(k).startswith("x-"))


def test_keys_are_compose_spec_keys(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert not _unknown(compose, TOP_LEVEL_KEYS), _unknown(compose, TOP_LEVEL_KEYS)
    for name, service in services.items():
        assert not _unknown(service, SERVICE_KEYS), f"{name}: {_unknown(service, SERVICE_KEYS)}"
        if isinstance(service.get("build"), dict):
            assert not _unknown(service["build"], BUILD_KEYS), f"{name}: build"
        if "healthcheck" in service:
            assert not _unknown(service["healthcheck"], HEALTHCHECK_KEYS), f"{name}: healthcheck"
            test = service["healthcheck"]["test"]
            assert isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL", "NONE"), name
        if isinstance(service.get("depends_on"), dict):
            for dep, spec in service["depends_on"].items():
                assert not _unknown(spec or {}, DEPENDS_ON_KEYS), f"{name} -> {dep}"
        if "restart" in service:
            # Unquoted `no` is YAML false, which compose rejects: it must be the string "no".
            restart = service["restart"]
            assert isinstance(restart, str), f"{name}: quote restart: {restart!r}"
            assert RESTART_POLICIES.fullmatch(restart), f"{name}: restart {restart!r}"


# ------------------------------------------------------------------ the HTTP gateway


def _option_value(args: list[str], flag: str) -> str:
    assert flag in args, f"no {flag} in {args}"
    return args[args.index(flag) + 1]


def test_curl_image_stage_is_last_and_installs_nothing() -> None:
    """The legacy builder builds every stage before its target: the curl stage, whose base
    (curlimages/curl by default) the other images must not need, comes last; and like every
    stage it installs nothing (the build has no network)."""
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert stages[-1] == ("${CURL_BASE_IMAGE}", "curl"), stages
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"^RUN .*\b(apt-get|apk|apt) ", text, re.M), "a build installs nothing"
    assert re.search(r"^ARG CURL_BASE_IMAGE=\S+", text, re.M), "CURL_BASE_IMAGE needs a default"
    script = BUILD_SCRIPT.read_text(encoding="utf-8")
    assert '"curl"' in script.split("DEBIAN_PACKAGES = ", 1)[1].splitlines()[0], (
        "the Debian base must include curl: it is fabstir-curl's base under --debian-base"
    )


def test_gateway_serves_off_loopback_with_a_token_from_a_one_shot_step() -> None:
    services = _services_of(_load(DEMO_FILE))
    gateway = services["gateway"]  # curl-client calls http://gateway:8080
    ((args),) = [a for a in _calls_in_argv(_argv(gateway)) if a and a[0] == "gateway"]
    host, port = _option_value(args, "--http").rsplit(":", 1)
    assert (host, port) == ("0.0.0.0", "8080"), args
    token = Path(_option_value(args, "--token-file"))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    volume = mounts[str(token.parent)]
    assert f"{volume}:{token.parent}:ro" in gateway["volumes"], "the gateway only reads it"
    # Who mounts the token's volume writable: the one-shot step that creates it, no one else.
    writers = [
        name
        for name, service in services.items()
        for mount in service.get("volumes", [])
        if mount.split(":")[0] == volume and not mount.endswith(":ro")
    ]
    assert len(writers) == 1, f"one one-shot step writes the token: {writers}"
    (writer,) = writers
    assert gateway["depends_on"][writer]["condition"] == "service_completed_successfully"
    assert services[writer].get("restart") == "no"
    health = " ".join(gateway["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/health" in health, health
    assert '"healthy"' in health, "healthy: HTTP accepts and the bootstrap node is connected"


def test_curl_client_uses_only_curl_against_the_gateway() -> None:
    services = _services_of(_load(DEMO_FILE))
    client = services["curl-client"]
    assert client["image"] == CURL_IMAGE
    argv = _argv(client)
    assert argv[0] in SHELLS and argv[1] == "-euc", argv
    script = argv[2].replace("$$", "$")
    assert CLI not in script and "python" not in script, "curl and sh only"
    for needed in (
        "http://gateway:8080",
        "Authorization: Bearer",
        "/v1/models",
        "/v1/chat/completions",
        "data: [DONE]",
    ):
        assert needed in script, f"the curl client does not use {needed!r}"
    token_dir = str(Path(_option_value(_calls_in_argv(_argv(services["gateway"]))[0],
                                       "--token-file")).parent)  # fmt: skip
    assert f"cat {token_dir}/token" in script
    assert any(v.endswith(f":{token_dir}:ro") for v in client["volumes"]), client["volumes"]
    depends = client["depends_on"]
    assert depends["gateway"]["condition"] == "service_healthy"
    served = {
        model
        for name, service in services.items()
        for call in _calls_in_argv(_argv(service))
        if call[:1] == ["host"]
        for model in [_option_value(call, "--model")]
    }
    bodies = [json.loads(body) for body in re.findall(r"^chat='(.*)'$", script, re.M)]
    assert [body.get("stream", False) for body in bodies] == [False, True], bodies
    for body in bodies:
        assert body["model"] in served, f"{body['model']} is served by no host of the file"
    hosts = {
        n for n, s in services.items() if any(c[:1] == ["host"] for c in _calls_in_argv(_argv(s)))
    }
    assert hosts <= set(depends), "the client waits for the hosts it asks for"
    sh = shutil.which("sh")
    if sh is not None:  # the script at least parses (POSIX sh -n)
        subprocess.run([sh, "-n", "-c", script], check=True, timeout=10)
