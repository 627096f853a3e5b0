"""sslyze's Mozilla "intermediate" compliance check against a server on loopback.

sslyze runs from its own virtualenv (``.venv-sslyze``, made by scripts/deps/sslyze.sh: it pins
an older ``cryptography`` than certsmith's). Its exit status alone is not enough: it exits 0 when
it could not connect at all, so the verdict is its compliance line for the target.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import LOOPBACK

REPO = Path(__file__).resolve().parents[2]
SSLYZE = REPO / ".venv-sslyze" / "bin" / "sslyze"


@dataclass(frozen=True)
class Verdict:
    returncode: int
    compliant: bool
    issues: dict[str, str]  # criterion -> sslyze's description
    output: str

    def __str__(self) -> str:
        return self.output[-6000:]


def mozilla_intermediate(
    host: str, port: int, ca_file: Path, ip: str = LOOPBACK, timeout: float = 600
) -> Verdict:
    """Scan ``host`` (the SNI name) at ``ip:port``, trusting ``ca_file`` as well as sslyze's
    own stores, against Mozilla's intermediate configuration."""
    assert SSLYZE.exists(), f"{SSLYZE} is missing: run scripts/deps/sslyze.sh"
    proc = subprocess.run(
        [
            str(SSLYZE),
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
            str(ca_file),
            f"{host}:{port}{{{ip}}}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    out = proc.stdout + proc.stderr
    target = re.escape(f"{host}:{port}")
    compliant = re.search(rf"^\s*{target}: OK - Compliant\.$", out, re.M) is not None
    issues = dict(re.findall(r"^\s+\* (\w+): (.*)$", out.split("COMPLIANCE AGAINST")[-1], re.M))
    return Verdict(proc.returncode, compliant and proc.returncode == 0, issues, out)
