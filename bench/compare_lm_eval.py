"""harness vs lm-evaluation-harness, side by side, on the same model folder, data and machine.

Not a test: a script that prints the figures recorded in bench/README.md. For each benchmark it
runs harness and lm-eval (0.4.x, `pip install 'harness[bench]'`) as subprocesses, one after
the other (alternating order across repeats, so both see the same machine load), from a cold
start each (fresh results DB, no response cache), and reports:

- items/s of each and the ratio (process wall time, model load and imports included for both);
- accuracy of each and the per-item agreement of predictions (multiple choice: argmax of the
  summed log-likelihood for acc, divided by the choice's length in characters for acc_norm,
  lm-eval's definition; generation: the extracted answer);
- harness's time in loglikelihood() against the time inside the model calls (the floor);
- each process's peak RSS (``wait4``'s ``ru_maxrss``, what ``/usr/bin/time -v`` reports), and the CPU
  that other processes used while it ran (the machine's busy time from /proc/stat less the process's
  own): a figure is refused, not recorded, when the machine was not quiet (``--max-load``,
  ``--max-foreign-cpu``), unless ``--allow-noisy`` records it with a loud ``noisy`` label.

Random demonstrations (``arc5_random``: harness ``--selector random``, lm-eval's default sampler) draw
different demonstrations per item in each tool, so predictions are not compared one to one: each
accuracy comes with its 95% interval, and the paired difference (items are shared) with its own.

    python bench/compare_lm_eval.py                       # the full suite (hours on 2 busy cores)
    python bench/compare_lm_eval.py --only arc5 --limit 50
    python bench/compare_lm_eval.py --only arc5_random             # 200 items, per-item random demonstrations
    python bench/compare_lm_eval.py --in-process --only arc5 arc0 hellaswag0 --limit 10 --repeats 2
    python bench/compare_lm_eval.py --in-process --only gsm8k8 --limit 10 --offset 8
    python bench/compare_lm_eval.py --only winogrande_like0 winogrande_like5   # per-choice contexts (partial scoring)
    python bench/compare_lm_eval.py --only multi_true --limit 100   # several true answers: mc1/mc2, acc_bytes, acc_mutual_info

The winogrande_like benches run harness's tasks/winogrande (per-choice contexts) and lm-eval's own
WinoGrande functions (multiple inputs) on 100 synthetic Winograd-style rows written to a temporary
folder by bench/lm_eval_tasks/winogrande_like.py (no WinoGrande copy is shared with the project).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
LM_EVAL_TASKS = ROOT / "bench" / "lm_eval_tasks"


@dataclass(frozen=True)
class Bench:
    name: str
    task: str  # harness task folder
    shots: int
    lm_eval_task: str
    limit: int
    generate: bool = False
    synthetic: bool = False  # rows from bench/lm_eval_tasks/winogrande_like.py in a temporary folder, not ../shared/data
    selector: str = "first_k"  # random: per-item random demonstrations in both tools (lm-eval's default sampler)


BENCHES = [
    Bench("arc5", "tasks/arc_easy", 5, "arc_easy_json", 500),
    Bench("arc5_random", "tasks/arc_easy", 5, "arc_easy_json_random", 200, selector="random"),
    Bench("arc0", "tasks/arc_easy", 0, "arc_easy_json", 500),
    Bench("hellaswag0", "tasks/hellaswag", 0, "hellaswag_json", 500),
    Bench("gsm8k8", "tasks/gsm8k", 8, "gsm8k_json", 100, generate=True),
    Bench("winogrande_like0", "tasks/winogrande", 0, "winogrande_like_json", 100, synthetic=True),
    Bench("winogrande_like5", "tasks/winogrande", 5, "winogrande_like_json", 100, synthetic=True),
]


def task_module(name: str) -> Any:
    """A helper module of bench/lm_eval_tasks/ (rows generators, lm-eval task functions), imported once."""
    sys.path.insert(0, str(LM_EVAL_TASKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(LM_EVAL_TASKS))


def winogrande_like() -> Any:
    """bench/lm_eval_tasks/winogrande_like.py (the synthetic rows and lm-eval's WinoGrande functions)."""
    return task_module("winogrande_like")


def data_dir_for(bench: Bench, tmp: Path) -> Path:
    """Where both harnesses read the bench's rows: ../shared/data, or the synthetic rows written under ``tmp``."""
    return winogrande_like().write(tmp / "data") if bench.synthetic else DATA


@dataclass(frozen=True)
class Quiet:
    """When a figure may be recorded: the 1-minute load average before a process starts (waited for, up to
    ``wait_s``) and the CPU other processes used while it ran, in cores on average."""

    max_load: float = 1.0
    max_foreign_cpu: float = 0.25
    wait_s: float = 600.0
    allow_noisy: bool = False


QUIET = Quiet()  # main() replaces it with the command line's thresholds


def _busy_s() -> tuple[float, float]:
    """The machine's busy and stolen CPU seconds so far, over all cores (/proc/stat's first line)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def wait_for_quiet(quiet: Quiet) -> float:
    """Wait until the 1-minute load average is at most ``quiet.max_load`` (our previous process's load decays
    within a minute or two); return the load it started at."""
    deadline = time.monotonic() + quiet.wait_s
    while os.getloadavg()[0] > quiet.max_load and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


# Runs argv[2:] as its only child and writes that child's rusage to argv[1]. Why a launcher: a process's peak RSS
# (ru_maxrss, as /usr/bin/time -v reports it) counts the memory image it was forked from until its exec, so a child of
# a big process (a test session that loaded models) would report the parent's size; forked from this small launcher, it
# reports its own.
LAUNCHER = """
import json, os, resource, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run(command: list[str], cwd: Path) -> tuple[float, str, dict[str, Any]]:
    """Run a process to the end; its wall time, stdout, and what the machine did meanwhile (peak RSS, CPU of others)."""
    load = wait_for_quiet(QUIET)
    busy, stolen = _busy_s()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        usage_file = Path(tmp) / "usage.json"
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(usage_file), *command], cwd=cwd, capture_output=True, text=True)
        wall = time.perf_counter() - started
        usage = json.loads(usage_file.read_text()) if usage_file.exists() else {}
    busy_after, stolen_after = _busy_s()
    if done.returncode or not usage:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    stdout = done.stdout
    own = usage["cpu_s"] + 0.05  # the launcher's own start-up, about 50 ms of CPU
    machine = {
        "peak_rss_mb": round(usage["maxrss_kb"] / 1024),  # Linux: kilobytes
        "load_1m_before": round(load, 2),
        "foreign_cpu_cores": round(max(0.0, busy_after - busy - own) / wall, 3),
        "stolen_cpu_cores": round((stolen_after - stolen) / wall, 3),
    }
    return wall, stdout, machine


def noise(machine: dict[str, Any], quiet: Quiet | None = None) -> str | None:
    """Why a process's figure is not a quiet machine's, or None."""
    quiet = quiet or QUIET
    if machine["load_1m_before"] > quiet.max_load:
        return f"load average {machine['load_1m_before']} > {quiet.max_load} when it started"
    if machine["foreign_cpu_cores"] + machine["stolen_cpu_cores"] > quiet.max_foreign_cpu:
        return f"other processes used {machine['foreign_cpu_cores'] + machine['stolen_cpu_cores']:.2f} cores while it ran (> {quiet.max_foreign_cpu})"
    return None


def run_harness(bench: Bench, limit: int, out: Path, data: Path = DATA) -> dict[str, Any]:
    db = out / "harness.db"
    command = [
        sys.executable, "-m", "harness.cli", "run", "--task", str(ROOT / bench.task), "--prompt", "lm_eval",
        "--shots", str(bench.shots), "--selector", bench.selector, "--limit", str(limit), "--data-dir", str(data),
        "--db", str(db), "--new", "--quiet", "--json",
    ]  # fmt: skip
    wall, stdout, machine = _run(command, ROOT)
    [items_file] = list(out.glob("*/items.jsonl"))
    items = sorted((json.loads(line) for line in items_file.open()), key=lambda r: r["position"])
    summary = json.loads(stdout[stdout.index("{") :])
    stats = next(iter(summary.get("backend_stats", {}).values()), {})
    return {"wall": wall, "items": items, "stats": stats, "command": " ".join(command), "machine": machine}


def run_lm_eval(bench: Bench, limit: int, out: Path, model: Path, batch_size: str, data: Path = DATA) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={model},dtype=float32",
        "--tasks", bench.lm_eval_task, "--include_path", str(LM_EVAL_TASKS), "--num_fewshot", str(bench.shots),
        "--limit", str(limit), "--batch_size", batch_size, "--device", "cpu", "--output_path", str(out), "--log_samples",
    ]  # fmt: skip
    if bench.synthetic:  # winogrande_like.dataset reads the rows from here
        command += ["--metadata", json.dumps({"data_dir": str(data)})]
    wall, _, machine = _run(command, ROOT)  # cwd: the task YAMLs name ../shared/data relative to the repository root
    [samples_file] = list(out.rglob(f"samples_{bench.lm_eval_task}_*.jsonl"))
    samples = sorted((json.loads(line) for line in samples_file.open()), key=lambda r: r["doc_id"])
    return {"wall": wall, "items": samples, "command": " ".join(command), "machine": machine}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def mc_predictions_harness(item: dict[str, Any]) -> tuple[int, int]:
    logprobs = [r["logprob"] for r in item["response"]]
    chars = [len(c[1:] if c.startswith(" ") else c) for c in item["continuations"]]  # lm-eval: len(choice), no delimiter
    return _argmax(logprobs), _argmax([lp / max(n, 1) for lp, n in zip(logprobs, chars)])


def mc_predictions_lm_eval(sample: dict[str, Any]) -> tuple[int, int]:
    logprobs = [float(r[0]) for r in sample["filtered_resps"]]
    choices = [a[1] for a in _arguments(sample)]
    chars = [len(c[1:] if c.startswith(" ") else c) for c in choices]
    return _argmax(logprobs), _argmax([lp / max(n, 1) for lp, n in zip(logprobs, chars)])


def _arguments(sample: dict[str, Any]) -> list[list[str]]:
    args = sample["arguments"]
    if isinstance(args, dict):  # 0.4.x: {"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...}
        return [[a["arg_0"], a["arg_1"]] for a in args.values()]
    return args


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_difference(ours: list[float], theirs: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Mean of ours - theirs over the shared items, with its 95% normal interval (the item is the unit)."""
    d = [a - b for a, b in zip(ours, theirs)]
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    return mean, mean - z * sd / math.sqrt(n), mean + z * sd / math.sqrt(n)


def random_demonstrations(h: dict[str, Any], e: dict[str, Any], n: int) -> dict[str, Any]:
    """Each tool drew its own demonstrations per item: accuracies with intervals, not per-item identity."""
    ours = [float(mc_predictions_harness(i)[0] == int(i["target"])) for i in h["items"][:n]]
    theirs = [float(s["acc"]) for s in e["items"][:n]]
    low, high = wilson(sum(theirs), n)
    mean, d_low, d_high = paired_difference(ours, theirs)
    acc = sum(ours) / n
    ours_norm = [float(mc_predictions_harness(i)[1] == int(i["target"])) for i in h["items"][:n]]
    return {
        "harness_acc": acc, "lm_eval_acc": sum(theirs) / n, "lm_eval_acc_ci95": [round(low, 3), round(high, 3)],
        "harness_acc_within_lm_eval_ci": low <= acc <= high,
        "acc_difference_ci95": [round(mean, 3), round(d_low, 3), round(d_high, 3)],
        "harness_acc_norm": sum(ours_norm) / n, "lm_eval_acc_norm": sum(float(s["acc_norm"]) for s in e["items"][:n]) / n,
        "same_correctness_acc": sum(a == b for a, b in zip(ours, theirs)) / n,
    }  # fmt: skip


def compare(bench: Bench, h: dict[str, Any], e: dict[str, Any]) -> dict[str, Any]:
    n = min(len(h["items"]), len(e["items"]))
    row: dict[str, Any] = {"bench": bench.name, "items": n, "harness_s": round(h["wall"], 1), "lm_eval_s": round(e["wall"], 1)}
    row["speedup"] = round(e["wall"] / h["wall"], 2)
    row["harness_peak_rss_mb"] = h["machine"]["peak_rss_mb"]
    row["lm_eval_peak_rss_mb"] = e["machine"]["peak_rss_mb"]
    row["machine"] = {"harness": h["machine"], "lm_eval": e["machine"]}
    reasons = [f"{who}: {why}" for who, side in (("harness", h), ("lm-eval", e)) if (why := noise(side["machine"]))]
    if reasons:
        row["noisy"] = "; ".join(reasons)
    if bench.selector != "first_k":
        row.update(random_demonstrations(h, e, n))
    elif bench.generate:
        hx = [str(i["extracted"]) for i in h["items"][:n]]
        ex = [str(s["filtered_resps"][0]) for s in e["items"][:n]]
        row["harness_em"] = sum(float(i["scores"].get("exact_match", 0)) for i in h["items"][:n]) / n
        row["lm_eval_em"] = sum(float(s.get("exact_match", 0)) for s in e["items"][:n]) / n
        row["same_answer"] = sum(_number(a) == _number(b) for a, b in zip(hx, ex)) / n
        row["same_text"] = sum(_same_text(i, s) for i, s in zip(h["items"][:n], e["items"][:n])) / n
    elif bench.synthetic:
        row.update(per_choice_agreement(h["items"][:n], e["items"][:n]))
    else:
        hp = [mc_predictions_harness(i) for i in h["items"][:n]]
        ep = [mc_predictions_lm_eval(s) for s in e["items"][:n]]
        targets = [int(i["target"]) for i in h["items"][:n]]
        row["harness_acc"] = sum(p[0] == t for p, t in zip(hp, targets)) / n
        row["harness_acc_norm"] = sum(p[1] == t for p, t in zip(hp, targets)) / n
        row["lm_eval_acc"] = sum(float(s["acc"]) for s in e["items"][:n]) / n
        row["lm_eval_acc_norm"] = sum(float(s["acc_norm"]) for s in e["items"][:n]) / n
        # harness's own acc_norm metric divides by len(" choice") (the scored continuation), one
        # character more than lm-eval's len(choice): shown separately because it can flip near-ties
        row["harness_acc_norm_metric"] = sum(float(i["scores"].get("acc_norm", 0)) for i in h["items"][:n]) / n
        row["same_correctness_acc_norm_metric"] = sum(
            float(i["scores"].get("acc_norm", 0)) == float(s["acc_norm"]) for i, s in zip(h["items"][:n], e["items"][:n])
        ) / n
        row["same_pred_acc"] = sum(a[0] == b[0] for a, b in zip(hp, ep)) / n
        row["same_pred_acc_norm"] = sum(a[1] == b[1] for a, b in zip(hp, ep)) / n
        diffs = [abs(r["logprob"] - float(x[0])) for i, s in zip(h["items"][:n], e["items"][:n]) for r, x in zip(i["response"], s["filtered_resps"])]
        row["max_abs_logprob_diff"] = float(f"{max(diffs):.2e}")
    stats = h["stats"]
    if stats.get("forward_s"):
        row["harness_loglikelihood_s"] = stats["loglikelihood_s"]
        row["harness_forward_s"] = stats["forward_s"]
        row["overhead_vs_forward"] = round(stats["loglikelihood_s"] / stats["forward_s"], 3)
        row["forward_tokens"] = stats["forward_tokens"]
        row["packed"] = bool(stats.get("packed"))
    if stats.get("generate_forward_s"):
        row["harness_generate_s"] = stats["generate_s"]
        row["harness_forward_s"] = stats["generate_forward_s"]
        row["overhead_vs_forward"] = round(stats["generate_s"] / stats["generate_forward_s"], 3)
        row["forward_tokens"] = stats["generate_tokens"]
    return row


def per_choice_agreement(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-choice contexts, item by item: acc predicts the argmax log-likelihood of the shared continuation, acc_norm
    divides it by len(the choice's context), lm-eval's ``doc_to_choice`` strings (both recomputed here from each side's
    own log-probabilities and the row); also each side's own acc / acc_norm item scores, and the requests' log-probs."""
    contexts = {r["id"]: winogrande_like().doc_to_choice(r) for r in winogrande_like().rows()[0]}
    n = len(ours)

    def preds(logprobs: list[float], ctx: list[str]) -> tuple[int, int]:
        return _argmax(logprobs), _argmax([lp / len(c) for lp, c in zip(logprobs, ctx)])

    hp = [preds([r["logprob"] for r in i["response"]], contexts[i["item_id"]]) for i in ours]
    ep = [preds([float(r[0]) for r in s["filtered_resps"]], winogrande_like().doc_to_choice(s["doc"])) for s in theirs]
    diffs = [abs(r["logprob"] - float(x[0])) for i, s in zip(ours, theirs) for r, x in zip(i["response"], s["filtered_resps"])]
    # the same row, the same scored continuations, and harness's stored prompt (the correct choice's) = lm-eval's context for it
    same_rendering = sum(
        i["item_id"] == s["doc"]["id"] and i["continuations"] == [a[1] for a in _arguments(s)]
        and i["prompt"] == _arguments(s)[int(i["target"])][0]
        for i, s in zip(ours, theirs)
    )
    return {
        "harness_acc": sum(float(i["scores"]["acc"]) for i in ours) / n, "lm_eval_acc": sum(float(s["acc"]) for s in theirs) / n,
        "harness_acc_norm": sum(float(i["scores"]["acc_norm"]) for i in ours) / n,
        "lm_eval_acc_norm": sum(float(s["acc_norm"]) for s in theirs) / n,
        "same_pred_acc": sum(a[0] == b[0] for a, b in zip(hp, ep)) / n, "same_pred_acc_norm": sum(a[1] == b[1] for a, b in zip(hp, ep)) / n,
        "same_correctness_acc": sum(float(i["scores"]["acc"]) == float(s["acc"]) for i, s in zip(ours, theirs)) / n,
        "same_correctness_acc_norm": sum(float(i["scores"]["acc_norm"]) == float(s["acc_norm"]) for i, s in zip(ours, theirs)) / n,
        "same_rendering": same_rendering / n, "max_abs_logprob_diff": float(f"{max(diffs):.2e}"),
    }  # fmt: skip


def _number(text: str) -> str:
    return text.replace(",", "").replace("$", "").strip().rstrip(".")


def _same_text(item: dict[str, Any], sample: dict[str, Any]) -> bool:
    ours = item["response"][0]["text"].strip()
    theirs = str(sample["resps"][0][0]).strip()
    return ours == theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=[*(b.name for b in BENCHES), "multi_true"], help="benchmarks to run (default: all)")
    parser.add_argument("--limit", type=int, help="items per benchmark (default: 500, GSM8K 100)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating harness/lm-eval pairs per benchmark")
    parser.add_argument("--lm-eval-batch-size", default="8", help="lm-eval --batch_size (a number or 'auto')")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--in-process", action="store_true", help="model time only, one process")
    parser.add_argument("--offset", type=int, default=0, help="--in-process gsm8k8: skip the first N test items (the first 8 are each other's demonstrations, so their prompts differ)")
    default = Quiet()
    parser.add_argument("--max-load", type=float, default=default.max_load, help="1-minute load average a process may start at (waited for; default %(default)s)")
    parser.add_argument("--max-foreign-cpu", type=float, default=default.max_foreign_cpu,
                        help="cores other processes may use on average while one runs (default %(default)s)")
    parser.add_argument("--quiet-wait", type=float, default=default.wait_s, help="seconds to wait for the load to fall (default %(default)s)")
    parser.add_argument("--allow-noisy", action="store_true", help="record figures from a busy machine, labelled 'noisy', instead of refusing them")
    args = parser.parse_args()
    global QUIET
    QUIET = Quiet(args.max_load, args.max_foreign_cpu, args.quiet_wait, args.allow_noisy)
    refused = 0
    from harness.backends.hf.embedded import embedded_model_path

    model = embedded_model_path()
    print(f"machine: {os.cpu_count()} CPUs; load average at start {os.getloadavg()}; model {model}", flush=True)
    rows = []
    if not args.only or "multi_true" in args.only:  # several true answers (mc1/mc2) and the normalisations: always in-process
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(multi_true(args.limit or 100, int(args.lm_eval_batch_size), Path(tmp)))
        print(json.dumps(rows[-1]), flush=True)
    for bench in [b for b in BENCHES if not args.only or b.name in args.only]:
        limit = args.limit or bench.limit
        if args.in_process:
            if bench.generate:
                rows.append(in_process_generate(bench, limit, int(args.lm_eval_batch_size), args.repeats, args.offset))
            else:
                rows.append(in_process(bench, limit, int(args.lm_eval_batch_size), args.repeats))
            print(json.dumps(rows[-1]), flush=True)
            continue
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                h_out, e_out = Path(tmp) / "h", Path(tmp) / "e"
                h_out.mkdir(), e_out.mkdir()
                load = os.getloadavg()
                data = data_dir_for(bench, Path(tmp))
                if repeat % 2 == 0:
                    h = run_harness(bench, limit, h_out, data)
                    e = run_lm_eval(bench, limit, e_out, model, args.lm_eval_batch_size, data)
                else:
                    e = run_lm_eval(bench, limit, e_out, model, args.lm_eval_batch_size, data)
                    h = run_harness(bench, limit, h_out, data)
                row = compare(bench, h, e)
                row["load_avg_1m_start_end"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
                if row.get("noisy") and not QUIET.allow_noisy:
                    refused += 1
                    print(f"REFUSED ({row['noisy']}; --allow-noisy records it labelled): {json.dumps(row)}", flush=True)
                    continue
                rows.append(row)
                print(json.dumps(row), flush=True)
                if repeat == 0:
                    print(f"  harness: {h['command']}\n  lm-eval: {e['command']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if refused:
        sys.exit(f"{refused} figure(s) refused: the machine was not quiet")


def in_process(bench: Bench, limit: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """Model time only: one process, each model loaded once, the same rendered requests to
    harness's HFBackend.loglikelihood and to lm-eval's HFLM.loglikelihood, alternating. Start-up
    (imports, loading) is excluded for both; use it when the machine is too slow for the full
    subprocess suite."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.backends import ModelSpec
    from harness.backends.hf.backend import HFBackend
    from harness.fewshot.selectors import SELECTORS
    from harness.prompts.template import load_prompt
    from harness.requests import LoglikelihoodRequest, loglikelihood_requests
    from harness.tasks.task import load_task

    tmp = tempfile.TemporaryDirectory()
    task = load_task(ROOT / bench.task, [data_dir_for(bench, Path(tmp.name))])
    template = load_prompt(task, "lm_eval")
    pool = task.items("fewshot") if bench.shots else []
    selector = SELECTORS.get(bench.selector)(pool)
    requests: list[LoglikelihoodRequest] = []
    for position, item in enumerate(task.items("test")[:limit]):
        shots = selector.select(item, bench.shots, random.Random(position)) if bench.shots else []
        rendered = template.render(task, item, shots)
        requests += loglikelihood_requests(rendered)  # per-choice contexts: each continuation after its own prompt
    ours = HFBackend(ModelSpec())
    theirs = HFLM(pretrained=str(ours.source), dtype="float32", batch_size=batch_size, device="cpu")
    instances = [Instance("loglikelihood", {}, (r.context, r.continuation), i) for i, r in enumerate(requests)]
    times: dict[str, list[float]] = {"harness": [], "lm_eval": []}
    for repeat in range(repeats):
        for name in (["harness", "lm_eval"] if repeat % 2 == 0 else ["lm_eval", "harness"]):
            started = time.perf_counter()
            if name == "harness":
                mine = ours.loglikelihood(requests)
            else:
                ref = theirs.loglikelihood(instances, disable_tqdm=True)
            times[name].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in times.items()}
    diff = max(abs(a.logprob - b[0]) for a, b in zip(mine, ref))
    stats = ours.stats()
    return {
        "bench": bench.name, "mode": "in-process", "items": limit, "requests": len(requests),
        "harness_s": round(best["harness"], 2), "lm_eval_s": round(best["lm_eval"], 2),
        "speedup": round(best["lm_eval"] / best["harness"], 2), "max_abs_logprob_diff": float(f"{diff:.2e}"),
        "overhead_vs_forward": round(stats["loglikelihood_s"] / stats["forward_s"], 3), "forward_tokens_per_pass": stats["forward_tokens"] // repeats,
        "lm_eval_batch_size": batch_size, "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def in_process_generate(bench: Bench, limit: int, batch_size: int, repeats: int, offset: int = 0) -> dict[str, Any]:
    """Generation, model time only: the same rendered greedy requests to HFBackend.generate and
    to lm-eval's HFLM.generate_until (same stops, max tokens and BOS), alternating; start-up
    excluded for both. Reports how many generated texts are identical."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from harness.backends import ModelSpec
    from harness.backends.hf.backend import HFBackend
    from harness.fewshot.selectors import SELECTORS
    from harness.prompts.template import load_prompt
    from harness.requests import GenerateRequest
    from harness.tasks.task import load_task

    task = load_task(ROOT / bench.task, [DATA])
    template = load_prompt(task, "lm_eval")
    selector = SELECTORS.get("first_k")(task.items("fewshot"))
    gen = task.spec.generation
    requests = [
        GenerateRequest(template.render(task, item, selector.select(item, bench.shots, None)).prompt, max_tokens=gen.max_tokens, stop=tuple(gen.stop))  # type: ignore[arg-type]
        for item in task.items("test")[offset : offset + limit]
    ]
    ours = HFBackend(ModelSpec())
    theirs = HFLM(pretrained=str(ours.source), dtype="float32", batch_size=batch_size, device="cpu")
    kwargs = {"until": list(gen.stop), "do_sample": False, "max_gen_toks": gen.max_tokens}
    instances = [Instance("generate_until", {}, (r.prompt, dict(kwargs)), i) for i, r in enumerate(requests)]
    times: dict[str, list[float]] = {"harness": [], "lm_eval": []}
    for repeat in range(repeats):
        for name in (["harness", "lm_eval"] if repeat % 2 == 0 else ["lm_eval", "harness"]):
            started = time.perf_counter()
            if name == "harness":
                mine = [r.text for r in ours.generate(requests)]
            else:
                ref = theirs.generate_until(instances, disable_tqdm=True)
            times[name].append(time.perf_counter() - started)
    best = {k: min(v) for k, v in times.items()}
    stats = ours.stats()
    return {
        "bench": bench.name, "mode": "in-process", "items": limit, "offset": offset, "harness_s": round(best["harness"], 2), "lm_eval_s": round(best["lm_eval"], 2),
        "speedup": round(best["lm_eval"] / best["harness"], 2), "same_text": sum(a.strip() == b.strip() for a, b in zip(mine, ref)) / len(requests),
        "generate_forward_s": stats.get("generate_forward_s"), "generate_tokens_per_pass": stats.get("generate_tokens", 0) // repeats,
        "lm_eval_batch_size": batch_size, "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def multi_true_module() -> Any:
    """bench/lm_eval_tasks/multi_true.py (the generated rows with several true answers, the harness tasks)."""
    return task_module("multi_true")


def multi_true(limit: int, batch_size: int, work: Path, short: bool = False) -> dict[str, Any]:
    """Several true answers, item by item, both pipelines whole in one process: harness's ``run_experiment`` on the
    tasks ``multi_true_mc2`` (mc2, mc1) and ``multi_true_mc1`` (acc, acc_norm, acc_norm_bytes, acc_mutual_info),
    lm-eval's ``simple_evaluate`` on ``multi_true_mc2.yaml`` (its own ``process_results_mc2``) and ``multi_true_mc1.yaml``
    (acc, acc_norm, acc_bytes, acc_mutual_info), the first ``limit`` generated rows written under ``work``.

    Reports per item: |harness mc2 - lm-eval mc2| (max, and the share under 1e-4), the share of identical predictions
    (argmax log-likelihood) on the mc1 task, and the share of identical item scores for acc, acc_norm, acc_bytes ~
    acc_norm_bytes and acc_mutual_info; the largest log-prob difference of the conditional and of the unconditional
    ("", choice) requests; and whether every prompt and continuation is the same string. ``short``: both sides
    without TruthfulQA's six demonstrations (``Q: <question>\\nA:``), for the slow test."""
    from lm_eval import simple_evaluate
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks._yaml_loader import load_yaml

    from harness.backends import ModelSpec
    from harness.backends.hf.backend import HFBackend
    from harness.runner.execute import run_experiment
    from harness.runner.spec import ExperimentSpec
    from harness.store.store import Store

    module = multi_true_module()
    data = module.write_data(work / "data", n=limit)
    folders = module.write_harness_tasks(work / "tasks", data, short)
    names = list(folders)  # multi_true_mc2, multi_true_mc1
    ours = HFBackend(ModelSpec())
    started = time.perf_counter()
    spec = ExperimentSpec(tasks=[str(folders[n]) for n in names], prompts=["lm_eval"], limit=limit)
    store = Store(work / "harness.db")
    run = run_experiment(spec, store, show_progress=False, backends={spec.models[0].label: ours}, new=True).run_id
    harness_s = time.perf_counter() - started
    cells = {c.cell_id: c.task for c in store.cells([run])}
    mine: dict[str, dict[str, Any]] = {n: {} for n in names}
    for row in store.items([run]):
        mine[cells[row.cell_id]][row.item_id] = {
            "prompt": row.prompt, "continuations": row.continuations,
            "response": row.response, "scores": row.scores,
        }
    tasks = []
    for name in names:
        config = load_yaml(LM_EVAL_TASKS / f"{name}.yaml")
        config["dataset_kwargs"] = {"data_files": {"test": str(data)}}
        if short:
            config["doc_to_text"] = module.SHORT_DOC_TO_TEXT
        tasks.append(ConfigurableTask(config=config))
    started = time.perf_counter()
    theirs = HFLM(pretrained=str(ours.source), dtype="float32", batch_size=batch_size, device="cpu")
    output = simple_evaluate(model=theirs, tasks=tasks, limit=limit, log_samples=True, bootstrap_iters=0)
    lm_eval_s = time.perf_counter() - started
    samples = {name: sorted(output["samples"][name], key=lambda s: s["doc_id"]) for name in names}  # type: ignore[index]
    ids = [r["id"] for r in module.rows(limit)]
    same_rendering, conditional, unconditional = 0, [0.0], [0.0]
    for name in names:
        for item_id, sample in zip(ids, samples[name]):
            h = mine[name][item_id]
            args = _arguments(sample)
            n = len(h["continuations"])
            # the same row, prompt and continuations; with acc_mutual_info both then score ("", continuation), same order
            expected = [[h["prompt"], c] for c in h["continuations"]] + [["", c] for c in h["continuations"]][: len(h["response"]) - n]
            same_rendering += sample["doc"]["id"] == item_id and [list(a) for a in args] == expected
            lls = [float(r[0]) for r in sample["filtered_resps"]]
            conditional += [abs(r["logprob"] - x) for r, x in zip(h["response"][:n], lls[:n])]
            unconditional += [abs(r["logprob"] - x) for r, x in zip(h["response"][n:], lls[n:])]
    mc2 = [abs(mine["multi_true_mc2"][i]["scores"]["mc2"] - float(s["acc"])) for i, s in zip(ids, samples["multi_true_mc2"])]
    mc1_rows = list(zip([mine["multi_true_mc1"][i] for i in ids], samples["multi_true_mc1"]))
    n_choices = [len(h["continuations"]) for h, _ in mc1_rows]
    same_pred = sum(_argmax([r["logprob"] for r in h["response"][:k]]) == _argmax([float(r[0]) for r in s["filtered_resps"][:k]])
                    for (h, s), k in zip(mc1_rows, n_choices))
    pairs = {"acc": "acc", "acc_norm": "acc_norm", "acc_norm_bytes": "acc_bytes", "acc_mutual_info": "acc_mutual_info"}
    same_scores = {f"same_{ours_name}": sum(float(h["scores"][ours_name]) == float(s[theirs_name]) for h, s in mc1_rows) / limit
                   for ours_name, theirs_name in pairs.items()}
    return {
        "bench": "multi_true", "mode": "in-process, whole pipelines", "items": limit, "prompt": "short" if short else "truthfulqa",
        "harness_s": round(harness_s, 1), "lm_eval_s": round(lm_eval_s, 1),
        "harness_mc2": sum(mine["multi_true_mc2"][i]["scores"]["mc2"] for i in ids) / limit,
        "lm_eval_mc2": sum(float(s["acc"]) for s in samples["multi_true_mc2"]) / limit,
        "max_abs_mc2_diff": float(f"{max(mc2):.2e}"), "mc2_within_1e-4": sum(d < 1e-4 for d in mc2) / limit,
        "harness_mc1": sum(float(h["scores"]["mc1"]) for h, _ in mc1_rows) / limit,
        "lm_eval_mc1": sum(float(s["acc"]) for _, s in mc1_rows) / limit,
        "same_pred_mc1": same_pred / limit, **same_scores,
        **{f"harness_{k}": sum(float(h["scores"][k]) for h, _ in mc1_rows) / limit for k in pairs},
        **{f"lm_eval_{v}": sum(float(s[v]) for _, s in mc1_rows) / limit for v in pairs.values()},
        "max_abs_logprob_diff": float(f"{max(conditional):.2e}"), "max_abs_unconditional_logprob_diff": float(f"{max(unconditional):.2e}"),
        "same_rendering": same_rendering / (2 * limit), "load_avg_1m": round(os.getloadavg()[0], 2),
    }  # fmt: skip


if __name__ == "__main__":
    main()
