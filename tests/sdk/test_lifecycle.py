"""start/stop and module-level calls, env and .env handling. Each test runs its scenario in
a fresh interpreter: ``elastik.start()`` owns one child per process, and import-time .env
loading only shows in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.sdk.conftest import APPROVE, WRITE, Core
from tests.support.servers import ROOT, free_port


def run_py(
    code: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIK_")}
    base["PYTHONPATH"] = str(ROOT)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_stop_and_module_level_calls(tmp_path: Path) -> None:
    port = free_port()
    r = run_py(
        f"""
        import json, secrets, warnings, elastik
        out = {{"running_before": elastik.is_running()}}
        e = elastik.start(key=secrets.token_hex(32), write_token="w", approve_token="a",
                          port={port}, data="data")
        out["url"] = e.url
        out["running"] = elastik.is_running()
        out["live"] = elastik.live_info()
        out["put"] = elastik.put("note", "hello")["status"]
        out["get"] = elastik.get("note").decode()
        out["text"] = elastik.get_text("/note")
        elastik.put_json("cfg", {{"a": 1}}); out["json"] = elastik.get_json("cfg")
        out["head_ct"] = elastik.head("note")["content-type"]
        out["exists"] = [elastik.exists("note"), elastik.exists("nope")]
        out["sizeof"] = elastik.sizeof("note")
        out["audited"] = [elastik.is_audited("note"), elastik.verify("note")]
        out["paths"] = elastik.list_paths()
        out["ls"] = elastik.ls("home")
        elastik.post("note", "!"); out["post"] = elastik.get("note").decode()
        out["delete"] = elastik.delete("cfg")
        out["version_body"] = elastik.get_text("proc/version")
        try:
            elastik.start(key=secrets.token_hex(32), port={port})
        except RuntimeError as exc:
            out["second_start"] = str(exc)
        elastik.show_config()
        info = elastik.binary_info()
        out["binary"] = [info["implementation"], info["command"][-3:], info["exists"]]
        elastik.stop(); elastik.stop()
        out["running_after"] = elastik.is_running()
        out["live_after"] = elastik.live_info().get("state")
        try:
            elastik.get("note")
        except RuntimeError as exc:
            out["after_stop"] = str(exc)
        print("RESULT" + json.dumps(out))
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.split("RESULT", 1)[1])
    assert out["running_before"] is False and out["running"] is True
    assert out["url"] == f"http://127.0.0.1:{port}"
    assert out["live"]["url"] == out["url"] and out["live"]["state"] == "running"
    assert (out["put"], out["get"], out["text"]) == (201, "hello", "hello")
    assert out["json"] == {"a": 1} and out["head_ct"] == "text/plain; charset=utf-8"
    assert out["exists"] == [True, False] and out["sizeof"] == 5
    assert out["audited"] == [True, True]
    assert "home/note" in out["paths"] and "home/note" in out["ls"]
    assert out["post"] == "hello!" and out["delete"] is True
    assert out["version_body"].startswith("elastik-core ")
    assert "already running" in out["second_start"]
    assert out["binary"] == ["python", ["-m", "elastik", "run"], True]
    assert out["running_after"] is False and out["live_after"] == "stopped"
    assert "no elastik core configured" in out["after_stop"]
    assert f"url:     http://127.0.0.1:{port} (live)" in r.stdout
    assert "Traceback" not in r.stderr
    assert (tmp_path / "data").is_dir()  # data= went to the child


def test_start_refuses_bad_configuration(tmp_path: Path) -> None:
    busy = free_port()
    r = run_py(
        f"""
        import socket, elastik
        errors = []
        for kw in ({{}}, {{"key": "short"}}, {{"key": " " * 40}}):
            try:
                elastik.start(port={busy}, **kw)
            except RuntimeError as exc:
                errors.append(str(exc).splitlines()[0])
        s = socket.socket(); s.bind(("127.0.0.1", {busy})); s.listen()
        try:
            elastik.start(key="k" * 32, port={busy})
        except RuntimeError as exc:
            errors.append(str(exc))
        try:
            elastik.start(key="k" * 32, port=70000)
        except ValueError as exc:
            errors.append(str(exc))
        print("\\n".join(errors))
        print("running", elastik.is_running())
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("audit key required")
    assert "at least 32 UTF-8 bytes" in lines[1] and "at least 32 UTF-8 bytes" in lines[2]
    assert lines[3] == f"port already in use before elastik start: 127.0.0.1:{busy}"
    assert "between 1 and 65535" in lines[4]
    assert lines[5] == "running False"


def test_child_failure_is_reported_with_its_output(tmp_path: Path) -> None:
    (tmp_path / "datafile").write_text("not a directory")
    r = run_py(
        f"""
        import elastik
        try:
            elastik.start(key="k" * 32, port={free_port()}, data="datafile")
        except RuntimeError as exc:
            print(exc)
        print("running", elastik.is_running())
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "exited with code" in r.stdout and "child output:" in r.stdout
    assert r.stdout.strip().endswith("running False")


def test_module_level_needs_start_or_env(tmp_path: Path, core: Core) -> None:
    code = """
        import elastik
        try:
            print(elastik.put("env-note", "from env")["status"])
            print(elastik.get_text("env-note"))
        except RuntimeError as exc:
            print("ERR", exc)
        """
    bare = run_py(code, tmp_path)
    assert "ERR no elastik core configured" in bare.stdout
    with_env = run_py(code, tmp_path, {"ELASTIK_URL": core.url, "ELASTIK_WRITE_TOKEN": WRITE})
    lines = with_env.stdout.splitlines()
    assert lines[0] in ("200", "201") and lines[1] == "from env", with_env.stderr


def test_legacy_elastik_token_works_with_a_warning(tmp_path: Path, core: Core) -> None:
    r = run_py(
        """
        import warnings, elastik
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            elastik.put("legacy-note", "x")
        print([str(w.message) for w in caught])
        print(elastik.get_text("legacy-note"))
        """,
        tmp_path,
        {"ELASTIK_URL": core.url, "ELASTIK_TOKEN": WRITE},
    )
    assert r.returncode == 0, r.stderr
    assert "ELASTIK_TOKEN is deprecated; rename it to ELASTIK_WRITE_TOKEN." in r.stdout
    assert r.stdout.splitlines()[-1] == "x"


def test_dotenv_fills_missing_variables_only(tmp_path: Path, core: Core) -> None:
    (tmp_path / ".env").write_text(
        "# comment\n"
        f"ELASTIK_URL={core.url}\n"
        f'ELASTIK_APPROVE_TOKEN="{APPROVE}"\n'
        "EXISTING=from-dotenv\n"
        "export QUOTED='a b'\n"
        "BROKEN LINE\n"
        "INLINE=value # note\n"
    )
    code = """
        import os, elastik
        print(os.environ.get("ELASTIK_URL"), os.environ.get("EXISTING"),
              os.environ.get("QUOTED"), os.environ.get("INLINE"))
        if os.environ.get("ELASTIK_URL"):
            print(elastik.put("dotenv-note", "x")["status"] in (200, 201),
                  elastik.delete("dotenv-note"))
        """
    r = run_py(code, tmp_path, {"EXISTING": "from-env"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{core.url} from-env a b value", "True True"]
    off = run_py(code, tmp_path, {"ELASTIK_NO_DOTENV": "1"})
    assert off.stdout.splitlines() == ["None None None None"]
    (tmp_path / "custom.env").write_text("FROM_CUSTOM=yes\n")
    manual = run_py(
        """
        import os, elastik
        print(elastik.load_dotenv("custom.env"), os.environ["FROM_CUSTOM"])
        print(elastik.load_dotenv("missing.env"))
        """,
        tmp_path,
        {"ELASTIK_NO_DOTENV": "1"},
    )
    assert manual.stdout.splitlines() == ["['FROM_CUSTOM'] yes", "[]"]


def test_import_is_light_and_versioned(tmp_path: Path) -> None:
    r = run_py(
        """
        import sys, elastik
        heavy = [m for m in ("uvicorn", "aiohttp", "aiocoap", "elastik.server", "sqlite3")
                 if m in sys.modules]
        print(elastik.__version__, heavy)
        """,
        tmp_path,
    )
    assert r.stdout.strip() == "0.1.0 []", r.stderr


def test_module_level_run_uses_the_started_core(tmp_path: Path) -> None:
    r = run_py(
        f"""
        import secrets, elastik
        e = elastik.start(key=secrets.token_hex(32), write_token="w", port={free_port()},
                          data="d")
        e.put("inbox/1", "urgent: tea")

        @elastik.listen("/home/inbox/*")
        def on_inbox(body, path, e):
            if b"urgent" in body:
                e.put("/home/alerts/latest", body)

        elastik.run(max_events=1, last_event_id=0)
        print(elastik.get_text("alerts/latest"))
        elastik.stop()
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "urgent: tea"
