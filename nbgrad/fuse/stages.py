"""A long fused step written as stages: functions of a few hundred lines each, compiled
separately, which the step calls in order.

Why: LLVM's time to optimize a function grows faster than its length. ResNet-18's training
step (about 1000 lines) took 85 s to compile as one function; its stages compile in a
fraction of that, each on its own and each cached by Numba on its own.

The step's body is cut between top-level statements. A stage takes the step's arguments it
reads, the arenas (it makes its own views of the buffers it uses), and the locals of earlier
stages it reads; it returns the locals that later stages read. A local that an earlier stage
made from buffers and arguments alone (`c = typed(0.0, buf)`, `v = reshaped(buf, n)`: the
lines before a loop) is made again by the stage that reads it instead. The step calls each
stage through `unlinked`, so that no stage is compiled again into the step.

A stage that takes nothing from earlier stages but the step's arguments can be compiled
apart from the others: the module names those in `APART`, with their lengths, so that on a
cold cache the compile helper (nbgrad._core.compile_ahead) compiles some of them while this
process compiles the rest (nbgrad.fuse.kernel).
"""
import ast
import re

from .._core import compile_ahead as _compile_ahead
from .call import tuple_target

# A body longer than this is cut into stages of about this many lines. Measured on ResNet-18's
# training step (CPU time of its compile, eager kernels cached): 200 lines 27.9 s, 100 lines
# 22.2 s; a 150-line step compiles as fast whole as in two stages. Where the compile helper
# may take stages (it is on unless NBGRAD_COMPILE_HELPER=0), 60: the digits CNN's step with
# Adam (77 lines) is then cut in two and the helper compiles the second stage (the update,
# whose many array arguments make it slow to compile) while this process compiles the first.
# Its first nbgrad.compile call on a cold cache took 4.53-4.67 s whole, 4.18-4.29 s cut at
# 60 (4.24-4.35 at 50; 4.67-4.80 at 40, where the second stage is over the helper's share and
# nothing is compiled apart); with the helper off, cutting costs 0.35-0.6 s, hence 100 there.
# ResNet-18's step: 17.4 -> 17.9 s (one run each); warm caches: +15 ms (three functions to
# load instead of one).
STAGE_LINES = 60 if _compile_ahead.ENABLED else 100
# A top-level line that makes a local from buffers, arguments and such locals alone.
_REMADE = re.compile(r"    ([a-z]+\d+) = (?:typed|reshaped|view)\(")
# Top-level lines that continue the statement before them.
_CONTINUATIONS = ("else:", "elif ", "except", "finally:")


def _statements(lines):
    """The body's top-level statements, each a list of lines, with the comments before it."""
    statements = [[]]
    for line in lines:
        text = line[4:]
        starts = not text.startswith((" ",) + _CONTINUATIONS)
        opened = any(not each.lstrip().startswith("#") for each in statements[-1])
        if starts and opened:
            statements.append([])
        statements[-1].append(line)
    return [statement for statement in statements if statement]


def _names(lines):
    """(names read, names assigned, loop variables) in the body `lines`."""
    tree = ast.parse("def stage():\n" + "\n".join(lines) + "\n    pass\n")
    reads, writes, loops = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (reads if isinstance(node.ctx, ast.Load) else writes).add(node.id)
        elif isinstance(node, ast.For):
            loops.update(name.id for name in ast.walk(node.target) if isinstance(name, ast.Name))
    return reads, writes - loops, loops


def _remade(statements):
    """{local: its line} of the statements that make a local from buffers, arguments and
    such locals alone (`_REMADE`)."""
    remade = {}
    for statement in statements:
        code = [line for line in statement if not line.lstrip().startswith("#")]
        match = _REMADE.match(code[0]) if len(code) == 1 else None
        if match:
            remade[match.group(1)] = code[0]
    return remade


def _plan(stages, remade):
    """Per stage: (the names it reads, the lines that make again the locals of earlier
    stages in `remade` that it reads (and those these read), the names it takes from earlier
    stages, the names it assigns)."""
    plans, made = [], set()
    for stage in stages:
        reads, writes, loops = _names(stage)
        again, pending = set(), [name for name in reads if name in remade and name in made]
        while pending:
            name = pending.pop()
            if name not in again:
                again.add(name)
                needs = _names([remade[name]])[0]
                reads |= needs
                pending += [read for read in needs if read in remade and read in made]
        lines = [line for name, line in remade.items() if name in again]
        plans.append((reads, lines, sorted((reads - loops - again) & made), writes))
        made |= writes
    return plans


def split(body, arguments, views, decorator, stage_decorator):
    """The source of the stage functions and of `fused_step` calling them, for the step
    with `body` lines, parameters `arguments` and buffer `views` (lines `name = view(...)`),
    the step under the line `decorator` and each stage under `stage_decorator`; None for a
    body that stays whole."""
    if len(body) <= STAGE_LINES:
        return None
    statements = _statements(body)
    remade = _remade(statements)
    stages = [[]]
    for statement in statements:
        if stages[-1] and len(stages[-1]) + len(statement) > STAGE_LINES:
            stages.append([])
        stages[-1] += statement
    view_of = {line.split(" = ", 1)[0]: line for line in views}
    arenas = [name for name in arguments if name.startswith("arena_")]
    plans = _plan(stages, remade)
    apart = {f"stage_{k}": len(stage) for k, (stage, plan) in enumerate(zip(stages, plans))
             if not plan[2]}
    source, calls = [f"APART = {apart!r}", f"LINES = {len(body)}", "", ""], []
    for k, (stage, (reads, again, carried, writes)) in enumerate(zip(stages, plans)):
        later = set().union(*(plan[2] for plan in plans[k + 1:]))
        taken = [name for name in arguments if name in reads or name in arenas]
        returned = sorted(writes & later)
        prologue = [f"    {view_of[name]}" for name in view_of if name in reads] + again
        epilogue = [f"    return {tuple_target(returned)}"] if returned else []
        source += [stage_decorator, f"def stage_{k}({', '.join(taken + carried)}):",
                   *prologue, *stage, *epilogue, "", ""]
        call = f"call_stage_{k}({', '.join(taken + carried)})"
        calls.append(f"    {tuple_target(returned)} = {call}" if returned else f"    {call}")
    source += [f"call_stage_{k} = unlinked(stage_{k})" for k in range(len(stages))]
    source += ["", "", decorator, f"def fused_step({', '.join(arguments)}):", *calls]
    return "\n".join(source) + "\n"
