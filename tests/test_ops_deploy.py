"""The files in deploy/ say only what kefu does: the alert rules and the dashboard use exactly the
metric names and labels kefu exports, the env example names real settings, and the systemd unit
has what a production unit needs."""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Iterator

import yaml
from prometheus_client.metrics import MetricWrapperBase

from kefu import metrics
from kefu.config import Settings
from kefu.preflight import env_name
from tests.support.server import ROOT

DEPLOY = ROOT / "deploy"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "offset", "bool", "inf", "nan"}
SERIES_PROMETHEUS_MAKES = {"up"}
LABELS_PROMETHEUS_ADDS = {"instance", "job"}


def exported() -> dict[str, set[str]]:
    """Every sample name kefu's metrics produce, with the labels it carries."""
    out: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, kind, labels = obj._name, obj._type, set(obj._labelnames)
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"],
                    "summary": ["_sum", "_count", ""]}[kind]
        for s in suffixes:
            out[name + s] = labels | ({"le"} if s == "_bucket" else set())
    return out


def expressions() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule['alert']}", rule["expr"]
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r}", target["expr"]
    for var in dash["templating"]["list"]:
        yield f"variable {var['name']}", var["query"]["query"]


def names_and_labels(expr: str) -> tuple[set[str], set[str]]:
    """The series names an expression selects and the label names it uses (Grafana's
    `label_values(metric, label)` counts as both)."""
    labels = set()
    for m in re.finditer(r"label_values\(\s*([^,]+),\s*(\w+)\s*\)", expr):
        labels.add(m.group(2))
    expr = re.sub(r"label_values\(\s*([^,]+),\s*\w+\s*\)", r"\1", expr)
    for m in re.finditer(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(1)))
    for m in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\$\w+", " ", bare)  # Grafana variables
    idents = set(re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare))
    return {i for i in idents if i.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", i)}, labels


def test_every_alert_and_panel_names_only_metrics_and_labels_kefu_exports():
    known = exported()
    seen = set()
    for where, expr in expressions():
        names, labels = names_and_labels(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - set(known) - SERIES_PROMETHEUS_MAKES
        assert not unknown, f"{where}: {sorted(unknown)} not exported by kefu (in {expr!r})"
        allowed = set().union(*(known.get(n, set()) for n in names)) | LABELS_PROMETHEUS_ADDS
        assert labels <= allowed, f"{where}: labels {sorted(labels - allowed)} do not exist (in {expr!r})"
        seen |= names
    # the signals are all watched somewhere
    for name in ("kefu_journal_pending", "kefu_write_errors_total", "kefu_connections",
                 "kefu_broker_reconnects_total", "kefu_closes_total"):
        assert name in seen


def test_the_env_example_names_only_real_settings():
    real = {env_name(f) for f in Settings.model_fields}
    keys = [ln.split("=", 1)[0] for ln in (DEPLOY / "kefu.env.example").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    assert keys and set(keys) <= real, sorted(set(keys) - real)
    assert "KEFU_DATA_DIR" in keys and "KEFU_ENV" in keys


def test_the_systemd_unit_runs_as_its_own_user_in_its_directory_with_limits_and_a_restart_policy():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "kefu.service").read_text())
    svc = unit["Service"]
    assert svc["User"] == "kefu" and svc["Group"] == "kefu"
    assert svc["WorkingDirectory"].startswith("/")
    assert svc["EnvironmentFile"] == "/etc/kefu/kefu.env"
    assert int(svc["LimitNOFILE"]) >= 65536
    assert svc["Restart"] in ("on-failure", "always") and svc["RestartPreventExitStatus"] == "2"
    assert svc["KillMode"] == "mixed"  # SIGTERM to the main process, which stops the workers in order
    assert svc["ExecStart"].endswith("kefu serve")
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    env = dict(ln.split("=", 1) for ln in (DEPLOY / "kefu.env.example").read_text().splitlines()
               if "=" in ln and not ln.startswith("#"))
    assert env["KEFU_DATA_DIR"] == "/var/lib/" + svc["StateDirectory"]  # writable under ProtectSystem
    assert env["KEFU_METRICS_DIR"].startswith("/run/" + svc["RuntimeDirectory"] + "/")
