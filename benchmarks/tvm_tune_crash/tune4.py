import sys, tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
A = te.placeholder((64, 64), name="A"); B = te.placeholder((64, 64), name="B")
k = te.reduce_axis((0, 64), name="k")
C = te.compute((64, 64), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
mod = tvm.IRModule({"main": te.create_prim_func([A, B, C])})
t = tvm.target.Target({"kind": "llvm", "num-cores": 1})
step = sys.argv[1]
if step == "rules":
    r = ms.schedule_rule.ScheduleRule.create("llvm"); print("rules", len(r), flush=True)
if step == "post":
    r = ms.postproc.Postproc.create("llvm"); print("post", len(r), flush=True)
if step == "mut":
    r = ms.mutator.Mutator.create("llvm"); print("mut", len(r), flush=True)
if step == "empty":
    sg = ms.space_generator.PostOrderApply(sch_rules=[], postprocs=[], mutator_probs={})
    ctx = ms.TuneContext(mod=mod, target=t, space_generator=sg, search_strategy="evolutionary", task_name="mm"); print("ctx ok", flush=True)
if step == "nostrat":
    ctx = ms.TuneContext(mod=mod, target=t, space_generator="post-order-apply", task_name="mm"); print("ctx ok", flush=True)
if step.startswith("part"):
    which = step[4:]
    kw = dict(sch_rules=[], postprocs=[], mutator_probs={})
    if which == "r": kw["sch_rules"] = "from-target"
    if which == "p": kw["postprocs"] = "from-target"
    if which == "m": kw["mutator_probs"] = "from-target"
    sg = ms.space_generator.PostOrderApply(**kw)
    ctx = ms.TuneContext(mod=mod, target=t, space_generator=sg, task_name="mm"); print("ctx ok", which, flush=True)
if step.startswith("rule"):
    i = int(step[4:])
    rules = ms.schedule_rule.ScheduleRule.create("llvm")
    print(type(rules[i]).__name__, flush=True)
    sg = ms.space_generator.PostOrderApply(sch_rules=[rules[i]], postprocs=[], mutator_probs={})
    ctx = ms.TuneContext(mod=mod, target=t, space_generator=sg, task_name="mm"); print("ctx ok", flush=True)
if step.startswith("mu"):
    i = int(step[2:])
    muts = ms.mutator.Mutator.create("llvm")
    items = list(muts.items())
    print(type(items[i][0]).__name__, items[i][1], flush=True)
    sg = ms.space_generator.PostOrderApply(sch_rules="from-target", postprocs="from-target", mutator_probs={items[i][0]: items[i][1]})
    ctx = ms.TuneContext(mod=mod, target=t, space_generator=sg, task_name="mm"); print("ctx ok", flush=True)
