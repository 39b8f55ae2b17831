"""Engine artefacts of a scenario plan: SGLang launch lines per worker group and a Kubernetes manifest.

Launch lines follow SGLang's documented flags (``python -m sglang.launch_server``; P/D disaggregation
with ``--disaggregation-mode prefill|decode`` and a transfer backend, DP attention with ``--dp-size`` and
``--enable-dp-attention``, multi-node instances with ``--nnodes/--node-rank/--dist-init-addr``, the router
``python -m sglang_router.launch_router --pd-disaggregation``; docs.sglang.io, "PD Disaggregation"). Each
pool's expert-location file, when its engine export exists, is passed with ``--init-expert-location``.

The manifest has one LeaderWorkerSet (``leaderworkerset.x-k8s.io/v1``, the Kubernetes API for multi-node
serving groups: one leader pod and ``size - 1`` workers per instance) per pool: ``replicas`` = instances,
``size`` = nodes per instance, ``nvidia.com/gpu`` = GPUs per pod. The image and the host names are
placeholders (``${...}``) that a deploy pipeline fills in. These files are not run by any test here: no
engine can be installed on this machine; ``tests/test_scenario.py`` checks that they agree with the plan.
"""

from __future__ import annotations

import math

import yaml

from planner.plans.schema import DeploymentPlan, PoolRecord, ScenarioPlan

__all__ = ["pool_launch_lines", "launch_script", "manifest"]

_PORTS = {"prefill": 30000, "decode": 30001, "both": 30000}


def _nodes(pool: PoolRecord, gpus_per_node: int) -> tuple[int, int]:
    """(nodes per instance, GPUs per pod)."""
    n = max(1, math.ceil(pool.gpus_per_instance / gpus_per_node))
    return n, pool.gpus_per_instance // n


def pool_launch_lines(model_path: str, pool: PoolRecord, gpus_per_node: int, *, disaggregated: bool,
                      expert_file: str | None = None, redundant: int | None = None) -> list[str]:
    """One ``sglang.launch_server`` line per node of one instance of ``pool`` (``${...}`` placeholders)."""
    from planner.scenario.chain import layout_of

    lay = layout_of(pool.layout)
    nodes, _ = _nodes(pool, gpus_per_node)
    base = [f"python -m sglang.launch_server --model-path {model_path}", f"--tp-size {lay.tp * lay.dp}"]
    if lay.dp > 1:
        base.append(f"--dp-size {lay.dp} --enable-dp-attention")
    if lay.pp > 1:
        base.append(f"--pp-size {lay.pp}")
    if lay.ep > 1:
        base.append(f"--ep-size {lay.ep}")
    if disaggregated:
        base.append(f"--disaggregation-mode {pool.role} --disaggregation-transfer-backend mooncake")
    if pool.token_budget:
        base.append(f"--chunked-prefill-size {pool.token_budget}")
    if pool.max_batch_size:
        base.append(f"--max-running-requests {pool.max_batch_size}")
    if expert_file:
        base.append(f"--init-expert-location {expert_file}")
        if redundant:
            base.append(f"--ep-num-redundant-experts {redundant}")
    base.append(f"--host 0.0.0.0 --port {_PORTS[pool.role]}")
    if nodes == 1:
        return [" ".join(base)]
    var = pool.role.upper()
    return [" ".join(base + [f"--nnodes {nodes} --node-rank {r} --dist-init-addr ${{{var}_LEADER}}:5000"])
            for r in range(nodes)]


def _redundant(plan: ScenarioPlan, role: str) -> int | None:
    for p in plan.replicas:
        if p.role == role:
            r = p.plan.replicas
            return len(r.physical_to_logical[0]) - r.num_experts
    return None


def _pool_lines(plan: ScenarioPlan, dep: DeploymentPlan, pool: PoolRecord, expert_files: dict[str, str],
                model_path: str) -> list[str]:
    """``pool_launch_lines`` of one pool of the chosen deployment, with its expert file when it has one."""
    efile = expert_files.get(pool.role)
    return pool_launch_lines(model_path, pool, dep.inputs.gpus_per_node,
                             disaggregated=dep.chosen.mode == "disaggregated", expert_file=efile,
                             redundant=_redundant(plan, pool.role) if efile else None)


def launch_script(plan: ScenarioPlan, expert_files: dict[str, str], model_path: str) -> str:
    """A shell script: every worker group's launch lines (one block per instance) and the router."""
    dep = plan.chosen_deployment
    if dep is None:
        return ""
    d = dep.chosen
    gpn = dep.inputs.gpus_per_node
    disagg = d.mode == "disaggregated"
    out = ["#!/usr/bin/env bash",
           f"# moeplan scenario {plan.name}: {d.xpyd} on {d.num_gpus} x {dep.inputs.gpu} for {plan.model}",
           f"# simulated: {d.rate_req_per_s:.4g} req/s, TTFT p{dep.inputs.slo.percentile:g} {d.ttft_ms:.0f} ms, "
           f"TPOT {d.tpot_ms:.1f} ms (attainment {d.attainment:.3f})",
           "# SGLang launch lines per worker group; run each block on its own node(s). ${...} are yours to fill.",
           "set -euo pipefail", ""]
    urls: dict[str, list[str]] = {}
    for pool in d.pools:
        nodes, per_pod = _nodes(pool, gpn)
        efile = expert_files.get(pool.role)
        out.append(f"# --- {pool.role} pool: {pool.instances} instance(s) of {pool.layout}, {nodes} node(s) x "
                   f"{per_pod} GPU(s) each" + (f"; expert placement {efile}" if efile else ""))
        for i in range(pool.instances):
            out.append(f"# {pool.role} instance {i}")
            out.extend(_pool_lines(plan, dep, pool, expert_files, model_path))
            urls.setdefault(pool.role, []).append(f"http://${{{pool.role.upper()}_{i}_HOST}}:{_PORTS[pool.role]}")
        out.append("")
    if disagg:
        args = " ".join(f"--prefill {u}" for u in urls.get("prefill", [])) + " " + " ".join(
            f"--decode {u}" for u in urls.get("decode", []))
        out.append(f"python -m sglang_router.launch_router --pd-disaggregation {args} --host 0.0.0.0 --port 8000")
    else:
        out.append("python -m sglang_router.launch_router --worker-urls " + " ".join(urls.get("both", []))
                   + " --host 0.0.0.0 --port 8000")
    return "\n".join(out) + "\n"


def manifest(plan: ScenarioPlan, expert_files: dict[str, str], model_path: str) -> str:
    """Kubernetes-style manifest: one LeaderWorkerSet per pool of the chosen deployment (module docstring)."""
    dep = plan.chosen_deployment
    if dep is None:
        return ""
    d = dep.chosen
    gpn = dep.inputs.gpus_per_node
    docs = []
    slug = "".join(ch if ch.isalnum() else "-" for ch in plan.name.lower()).strip("-")[:40] or "moeplan"
    for pool in d.pools:
        nodes, per_pod = _nodes(pool, gpn)
        line = _pool_lines(plan, dep, pool, expert_files, model_path)[0]
        line = line.replace("--node-rank 0", "--node-rank ${LWS_WORKER_INDEX}").replace(
            f"${{{pool.role.upper()}_LEADER}}", "${LWS_LEADER_ADDRESS}")
        pod = {"containers": [{"name": "sglang", "image": "${SGLANG_IMAGE}", "command": ["sh", "-c", line],
                               "resources": {"limits": {"nvidia.com/gpu": per_pod}}}]}
        docs.append({
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": f"{slug}-{pool.role}",
                         "labels": {"app.kubernetes.io/part-of": slug, "moeplan/role": pool.role,
                                    "moeplan/layout": pool.layout}},
            "spec": {"replicas": pool.instances,
                     "leaderWorkerTemplate": {"size": nodes, "workerTemplate": {"spec": pod}}},
        })
    head = (f"# moeplan scenario {plan.name}: {d.xpyd} on {d.num_gpus} x {dep.inputs.gpu}; one LeaderWorkerSet per "
            "pool.\n# ${SGLANG_IMAGE} is yours to set; expert-location files must be mounted at the paths named.\n")
    return head + yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
