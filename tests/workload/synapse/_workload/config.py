"""Command line and YAML configuration, read the way Synapse reads them.

Synapse takes repeated ``-c/--config-path`` arguments; a directory adds the ``*.yaml`` files it contains in sorted
order, and keys of later files replace the same top-level keys of earlier ones. On top of Synapse's own keys the
workload reads a ``workload:`` section; its keys are the long option names with ``_`` for ``-``, and command-line
options override it.
"""

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

MAIN_APP = "synapse.app.homeserver"
WORKLOAD_SCHEMA = "synapse_workload"
# Connection-pool keys of Synapse's database.args that belong to Twisted's adbapi, not to psycopg2.connect().
_ADBAPI_KEYS = ("cp_min", "cp_max", "cp_reconnect", "cp_noisy", "cp_openfun")
# Synapse listens on both when a listener names no address.
_DEFAULT_BIND_ADDRESSES = ("::", "0.0.0.0")
DEFAULT_HOLD_SECONDS = 0.5


class ConfigError(Exception):
    """A problem with the command line or the configuration files, reported to the user verbatim."""


@dataclass(frozen=True)
class Listener:
    port: int
    bind_addresses: Tuple[str, ...]


@dataclass(frozen=True)
class Config:
    app: str  # the module that was run, e.g. synapse.app.generic_worker
    worker_app: str
    worker_name: str
    config_files: Tuple[str, ...]
    enable_metrics: bool
    metrics_listeners: Tuple[Listener, ...]
    db_args: Optional[Dict[str, Any]]  # keyword arguments for psycopg2.connect(); None with --no-db
    duration: float
    gc_schedule: Dict[int, float]  # generation -> collections per second
    garbage_per_gc: int
    query_rate: float
    threads: int
    io_rate: float
    io_bytes: int
    direct_io: bool
    media_dir: str
    truth: Optional[str]
    gc_hold_query: Optional[float]  # pg_sleep() seconds of the held query, None when the mode is off
    hold_heap: int
    query_sleep: float
    slow_query: float
    scan_table: Optional[str]
    bare_queries: int
    start_gate: Optional[str]  # wait for this file to exist before any activity (GC, queries, I/O)
    start_gate_timeout: Optional[float]  # seconds to wait for it; None: the duration
    linger: float  # seconds to stay up, idle, after the run
    reactor: str  # how the main loop waits: "select" or "epoll"
    state_phases: bool  # scripted thread-state phases on the reactor thread (phases.py)


def _number(kind: Callable[[Any], Any], minimum: float, strictly: bool = False) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        result = kind(value)
        if result < minimum or (strictly and result == minimum):
            raise ValueError(f"must be {'>' if strictly else '>='} {minimum}")
        return result

    return convert


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("expected true or false")


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a path")
    return value


def _reactor_kind(value: Any) -> str:
    if value not in ("select", "epoll"):
        raise ValueError("expected select or epoll")
    return value


def _hold_seconds(value: Any) -> Optional[float]:
    if value is True:
        return DEFAULT_HOLD_SECONDS
    if value is False:
        return None
    return _number(float, 0, strictly=True)(value)


def parse_gc_schedule(value: Any) -> Dict[int, float]:
    """``"0:2,1:0.5,2:0.1"`` (or a YAML mapping {0: 2, ...}) -> {generation: collections per second}.

    ``none`` or an empty string means no scheduled collections."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str):
        text = value.strip()
        items = [] if text in ("", "none") else [part.split(":", 1) for part in text.split(",")]
    else:
        raise ValueError("expected GEN:RATE[,GEN:RATE...]")
    schedule: Dict[int, float] = {}
    for item in items:
        if len(item) != 2:
            raise ValueError(f"{':'.join(item)!r} is not GEN:RATE")
        gen, rate = int(item[0]), _number(float, 0)(item[1])
        if gen not in (0, 1, 2):
            raise ValueError(f"generation {gen} is not 0, 1 or 2")
        if gen in schedule:
            raise ValueError(f"generation {gen} given twice")
        if rate > 0:
            schedule[gen] = rate
    return schedule


# name: (converter, default, help). Each is a --long-option and a key of the `workload:` section.
_OPTIONS: Dict[str, Tuple[Callable[[Any], Any], Any, str]] = {
    "duration": (_number(float, 0, strictly=True), 30.0, "seconds to run before stopping by itself (30)"),
    "gc_schedule": (parse_gc_schedule, "0:1,1:0.1,2:0.0333",
                    "collections per second per generation, GEN:RATE,... or none (0:1,1:0.1,2:0.0333)"),
    "garbage_per_gc": (_number(int, 0), 1000, "reference cycles allocated before each collection (1000)"),
    "query_rate": (_number(float, 0), 20.0, "database transactions per second (20)"),
    "threads": (_number(int, 1), 3, "database connection pool size (3)"),
    "io_rate": (_number(float, 0), 1.0, "media files written per second (1)"),
    "io_bytes": (_number(int, 1), 65536, "bytes per media file (65536)"),
    "direct_io": (_flag, False, "write and read back media files with O_DIRECT"),
    "media_dir": (_path, None, "media directory (config media_store_path, else ./media_store)"),
    "truth": (_path, None, "write ground truth as JSON lines to this file"),
    "gc_hold_query": (_hold_seconds, None,
                      f"hold a SELECT pg_sleep(SECONDS) open while the main thread collects a big heap "
                      f"(SECONDS defaults to {DEFAULT_HOLD_SECONDS})"),
    "hold_heap": (_number(int, 0), 1_000_000, "live objects kept for --gc-hold-query collections (1000000)"),
    "query_sleep": (_number(float, 0), 0.0, "seconds slept inside the timed region of every query (0)"),
    "scan_table": (str, None, "add a 'SELECT count(*) FROM TABLE' transaction to each round of the request mix (a "
                              "table the test created: makes the worker's backends read it)"),
    "slow_query": (_number(float, 0), 0.0,
                   "add a 'SELECT pg_sleep(SECONDS)' transaction to each round of the request mix (0: none), so that "
                   "time spent in PostgreSQL dwarfs Python's own overhead around each query"),
    "bare_queries": (_number(int, 0), 0,
                     "add N statements to each round of the request mix that a pool thread sends outside any "
                     "transaction (autocommit, no new_transaction frame on its stack; desc null in the truth) (0)"),
    "start_gate": (_path, None, "after start-up (listeners bound, database connected), wait until this file exists "
                                "before any GC, query or I/O, so that a profiler can attach first"),
    "start_gate_timeout": (_number(float, 0, strictly=True), None,
                           "seconds to wait for --start-gate before giving up with an error (default: --duration)"),
    "no_db": (_flag, False, "run without PostgreSQL"),
    "linger": (_number(float, 0), 0.0,
               "after the run (and its summary record), keep serving metrics idle for SECONDS before exiting (0), so "
               "that a scraper sees the final counters; SIGTERM/SIGINT end it early"),
    "reactor": (_reactor_kind, "select",
                "how the main loop waits: select (select.select) or epoll (select.epoll().poll(), timed like "
                "Synapse's EpollWrapper; its own poll and tick counts go to the truth file) (select)"),
    "state_phases": (_flag, False,
                     "with --reactor epoll: run scripted thread-state phases on the reactor thread (CPU, run-queue "
                     "wait, lock wait, O_DIRECT reads; files in the media directory), one tick each, and write their "
                     "own truth (a thread_states record)"),
}


def _argument_parser(app: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {app}",
                                     description="Synapse look-alike workload for synapse-profiler tests.")
    parser.add_argument("-c", "--config-path", action="append", metavar="CONFIG_FILE", required=True,
                        help="a YAML config file, or a directory whose *.yaml files are read in sorted order; "
                             "may be given several times, later keys override earlier ones")
    for name, (_, _, help_text) in _OPTIONS.items():
        option = "--" + name.replace("_", "-")
        if _OPTIONS[name][0] is _flag:
            parser.add_argument(option, action="store_const", const=True, default=None, help=help_text)
        elif name == "gc_hold_query":
            parser.add_argument(option, nargs="?", const=True, default=None, metavar="SECONDS", help=help_text)
        elif name == "gc_schedule":
            parser.add_argument(option, "--gc-rate", default=None, help=help_text)
        else:
            parser.add_argument(option, default=None, help=help_text)
    return parser


def _config_files(paths: List[str]) -> List[str]:
    files: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(os.path.join(path, name) for name in sorted(os.listdir(path))
                         if name.endswith(".yaml") and os.path.isfile(os.path.join(path, name)))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ConfigError(f"config file {path!r} does not exist")
    return files


def _read_yaml(files: List[str]) -> Dict[str, Any]:
    merged: Dict[str, Any] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {path!r}: {e}") from e
        if content is None:
            continue
        if not isinstance(content, dict):
            raise ConfigError(f"config file {path!r} is not a YAML mapping")
        merged.update(content)
    return merged


def _listener_serves_metrics(listener: Dict[str, Any]) -> bool:
    if listener.get("type") == "metrics":
        return True
    if listener.get("type") != "http":
        return False
    return any(isinstance(r, dict) and "metrics" in (r.get("names") or []) for r in listener.get("resources") or [])


def _metrics_listeners(conf: Dict[str, Any], key: str) -> Tuple[Listener, ...]:
    """The listeners serving metrics, from `listeners` (main process) or `worker_listeners` (workers)."""
    entries = conf.get(key) or []
    if not isinstance(entries, list):
        raise ConfigError(f"{key} must be a list")
    found: List[Listener] = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        if not _listener_serves_metrics(entry):
            continue
        port = entry.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{where}: port must be an integer from 0 to 65535, got {port!r}")
        addresses = entry.get("bind_addresses")
        if addresses is None:
            single = entry.get("bind_address")
            addresses = [single] if single else list(_DEFAULT_BIND_ADDRESSES)
        if not isinstance(addresses, list) or not all(isinstance(a, str) and a for a in addresses):
            raise ConfigError(f"{where}: bind_addresses must be a list of addresses")
        found.append(Listener(port, tuple(addresses)))
    return tuple(found)


def _database_args(conf: Dict[str, Any]) -> Dict[str, Any]:
    database = conf.get("database")
    if not isinstance(database, dict):
        raise ConfigError("the config has no database section (run with --no-db to work without PostgreSQL)")
    if database.get("name") != "psycopg2":
        raise ConfigError(f"database.name must be psycopg2, got {database.get('name')!r}")
    args = database.get("args") or {}
    if not isinstance(args, dict):
        raise ConfigError("database.args must be a mapping")
    args = {k: v for k, v in args.items() if k not in _ADBAPI_KEYS}
    args.setdefault("connect_timeout", 5)
    # Keep the workload's tables out of the way of anything else living in that database.
    args["options"] = f"{args.get('options', '')} -c search_path={WORKLOAD_SCHEMA}".strip()
    return args


def _identity(app: str, conf: Dict[str, Any]) -> Tuple[str, str]:
    worker_app = conf.get("worker_app")
    if app == MAIN_APP:
        if worker_app not in (None, MAIN_APP):
            raise ConfigError("worker_app is set in the config but this is the main process: "
                              "use python -m synapse.app.generic_worker instead")
        return MAIN_APP, conf.get("worker_name") or "master"
    if not worker_app:
        raise ConfigError(f"{app} needs worker_app in the config (e.g. synapse.app.generic_worker)")
    if not isinstance(worker_app, str):
        raise ConfigError("worker_app must be a string")
    return worker_app, conf.get("worker_name") or worker_app


def load(app: str, argv: List[str]) -> Config:
    """Parse the command line and the config files it names; raise ConfigError on any problem."""
    parser = _argument_parser(app)
    args = parser.parse_args(argv)  # exits with status 2 and a usage message on bad syntax
    files = _config_files(args.config_path)
    conf = _read_yaml(files)

    section = conf.get("workload") or {}
    if not isinstance(section, dict):
        raise ConfigError("the workload section must be a mapping")
    unknown = sorted(set(section) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown key(s) in the workload section: {', '.join(unknown)}")
    options: Dict[str, Any] = {}
    for name, (convert, default, _) in _OPTIONS.items():
        given = getattr(args, name)
        value = given if given is not None else section.get(name, default)
        try:
            options[name] = convert(value) if value is not None else None
        except ValueError as e:
            source = f"--{name.replace('_', '-')}" if given is not None else f"workload.{name}"
            raise ConfigError(f"{source}: invalid value {value!r}: {e}") from e

    if options["direct_io"] and options["io_bytes"] % 4096:
        raise ConfigError("--direct-io needs --io-bytes to be a multiple of 4096")
    no_db = options.pop("no_db")
    if no_db and options["gc_hold_query"] is not None:
        raise ConfigError("--gc-hold-query needs the database; drop --no-db")
    if options["state_phases"] and options["reactor"] != "epoll":
        raise ConfigError("--state-phases needs --reactor epoll")
    if options["media_dir"] is None:
        options["media_dir"] = conf.get("media_store_path") or "media_store"

    enable_metrics = conf.get("enable_metrics", False)
    if not isinstance(enable_metrics, bool):
        raise ConfigError("enable_metrics must be true or false")
    worker_app, worker_name = _identity(app, conf)
    return Config(app=app, worker_app=worker_app, worker_name=str(worker_name), config_files=tuple(files),
                  enable_metrics=enable_metrics,
                  metrics_listeners=_metrics_listeners(conf, "listeners" if app == MAIN_APP else "worker_listeners"),
                  db_args=None if no_db else _database_args(conf), **options)
