"""A long fused step written as stages: functions of a few hundred lines each, compiled
separately, which the step calls in order.

Why: LLVM's time to optimize a function grows faster than its length. ResNet-18's training
step (about 1000 lines) took 85 s to compile as one function; its stages compile in a
fraction of that, each on its own and each cached by Numba on its own.

The step's body is cut between top-level statements. A stage takes the step's arguments it
reads, the arenas (it makes its own views of the buffers it uses), and the locals of earlier
stages it reads; it returns the locals that later stages read. The step calls each stage
through `unlinked`, so that no stage is compiled again into the step.
"""
import ast

from .call import tuple_target

# A body longer than this is cut into stages of about this many lines. Measured on ResNet-18's
# training step (CPU time of its compile, eager kernels cached): 200 lines 27.9 s, 100 lines
# 22.2 s; a 150-line step compiles as fast whole as in two stages.
STAGE_LINES = 100
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


def split(body, arguments, views, decorator):
    """The source of the stage functions and of `fused_step` calling them, for the step
    with `body` lines, parameters `arguments` and buffer `views` (lines `name = view(...)`),
    each function under the line `decorator`."""
    stages = [[]]
    for statement in _statements(body):
        if stages[-1] and len(stages[-1]) + len(statement) > STAGE_LINES:
            stages.append([])
        stages[-1] += statement
    view_of = {line.split(" = ", 1)[0]: line for line in views}
    arenas = [name for name in arguments if name.startswith("arena_")]
    names = [_names(stage) for stage in stages]
    source, calls, made = [], [], set()
    for k, (stage, (reads, writes, loops)) in enumerate(zip(stages, names)):
        later = set().union(*(reads for reads, _, _ in names[k + 1:]))
        taken = [name for name in arguments if name in reads or name in arenas]
        carried = sorted((reads - loops) & made)
        returned = sorted(writes & later)
        made |= writes
        prologue = [f"    {view_of[name]}" for name in view_of if name in reads]
        epilogue = [f"    return {tuple_target(returned)}"] if returned else []
        source += [decorator, f"def stage_{k}({', '.join(taken + carried)}):",
                   *prologue, *stage, *epilogue, "", ""]
        call = f"call_stage_{k}({', '.join(taken + carried)})"
        calls.append(f"    {tuple_target(returned)} = {call}" if returned else f"    {call}")
    source += [f"call_stage_{k} = unlinked(stage_{k})" for k in range(len(stages))]
    source += ["", "", decorator, f"def fused_step({', '.join(arguments)}):", *calls]
    return "\n".join(source) + "\n"
