"""The results file every `trustee bench` command writes and `trustee bench report` reads.

One JSON object (``FORMAT``); consumers must ignore members they do not know. Times are seconds,
latencies milliseconds. Members:

* ``format``: ``"trustee-bench/1"``; ``kind``: ``"kbs"`` or ``"verify"``; ``label``: the run's
  name in reports (``--label``, default the target's host or the TEE);
* ``command``: the exact argv; ``started``: RFC 3339; ``duration_s``, ``warmup_s``;
* ``machine``: ``hostname``, ``cpus``, ``cpu_model``, ``memory_bytes``, ``os``, ``python``;
  ``versions``: ``trustee``, ``core`` (and ``dcap_qvl`` when used);
* ``target``: kbs: ``url``, ``protocol``, ``tee``, ``resource``, ``passport``; verify:
  ``tee``, ``evidence``;
* ``load``: ``mode`` (``"closed"``: ``clients`` each sending its next flow when the last one
  ends; ``"open"``: ``rate`` flows per second sent on schedule, latency measured from the
  intended send time), ``clients``, ``rate``, ``procs``;
* ``totals``: ``flows`` (finished in the measured window), ``ok``, ``errors``, ``flows_per_s``
  (ok per second of the window), ``in_flight_mean`` (flows in flight on average, by Little's
  law: near ``clients`` in a healthy closed loop);
* ``errors``: class → count; classes are ``http_<status>/<ErrorInformation type's last path
  segment or "-">``, ``connect``, ``timeout``, ``tls``, ``protocol`` (an answer that does not
  parse), ``check`` (an answer that parsed but was wrong: bad token signature, a secret that
  does not decrypt to the stored one);
* ``error_messages`` (kbs): class → the first failure of that class, one line (what the
  server said, or why the answer was refused);
* ``checks``: ``tokens_verified``, ``secrets_decrypted``, ``secret_mismatches``,
  ``tokens_unverified`` (no server key to check them against);
* ``latency_ms``: ``count``, ``mean``, ``p50``, ``p90``, ``p99``, ``p99_9``, ``max`` (of the ok
  flows, from an HDR histogram); ``latency_cdf``: ``[[ms, fraction], …]`` ascending, at most
  ~200 points;
* ``timeline``: one entry per second of the window: ``t`` (seconds since the window began),
  ``ok``, ``errors``, ``p99_ms``;
* ``cpu`` (over the measuring window): ``generator`` {``cpu_s``, ``cores`` (cpu_s / wall),
  ``share`` (of the machine); the generator's worker processes included},
  ``server`` {``pid``, ``cpu_s``, ``cores``, ``rss_mib_max``} or null;
* ``warnings``: sentences (e.g. the generator used enough CPU to distort the result);
* verify only: ``per_call_us`` {``ours``, ``ours_warm``, ``ours_cold``, ``dcap_qvl``?}: the
  median over ``rounds`` of the mean µs of one call; ``ours_warm`` through one long-lived native
  verifier (as the server holds it), ``ours_cold`` a new one per call, ``ours`` the same as
  ``ours_warm``; ``calls_per_s``: the same keys, 10⁶ / per_call_us; ``ratio``?: dcap_qvl /
  ours_warm; ``iterations``: the same keys, calls per round; ``rounds``; ``target`` also has
  ``at`` (the time every validity was judged at, RFC 3339) and ``tcb_status`` (our verdict's,
  when the TEE has one); ``notes``: sentences on how the figures were made (e.g. why there is no
  dcap-qvl figure).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT = "trustee-bench/1"
KINDS = ("kbs", "verify")


class ResultsError(Exception):
    """A file that is not a trustee-bench results file; the message names it and why."""


def write_results(path: str | os.PathLike[str], results: dict[str, Any]) -> None:
    """Write aside, then rename: a reader never sees half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    temporary.replace(target)


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The results in `path`; ResultsError (one line) for anything else."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultsError(f"{path}: not a {FORMAT} results file")
    if data.get("kind") not in KINDS:
        raise ResultsError(f"{path}: kind {data.get('kind')!r} is not one of {', '.join(KINDS)}")
    return data
