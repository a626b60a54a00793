"""The matrix reports (JSON, one per check and g4f release) as an RST list-table.

    python tests/g4f_matrix/table.py REPORT_DIR VERSION...

A cell is ``✓`` when every mode of the entry passed (by class, and by class
and by name after register()), ``n/a`` when the release lacks it, and names
what differs otherwise; a failure shows as ``FAILED``.
"""
import json
import os
import sys

ROWS = [
    ("ChatCompletion.create", "ChatCompletion.create"),
    ("ChatCompletion.create(stream=True)", "ChatCompletion.create(stream=True)"),
    ("await ChatCompletion.create_async", "await ChatCompletion.create_async"),
    ("ChatCompletion.create_async(stream=True)", "ChatCompletion.create_async(stream=True)"),
    ("Client(provider=FakeGpt).chat.completions.create", "Client(provider=FakeGpt).chat.completions.create"),
    ("Client(provider=FakeGpt).chat.completions.create stream=True", "... stream=True"),
    ("Client().chat.completions.create(provider=FakeGpt)", "Client().chat.completions.create(provider=FakeGpt)"),
    ("Client().chat.completions.create(provider=FakeGpt) stream=True", "... stream=True"),
    ("AsyncClient(provider=FakeGpt).chat.completions.create", "AsyncClient(provider=FakeGpt).chat.completions.create"),
    ("AsyncClient(provider=FakeGpt).chat.completions.create stream=True", "... stream=True"),
    ("AsyncClient().chat.completions.create(provider=FakeGpt)", "AsyncClient().chat.completions.create(provider=FakeGpt)"),
    ("AsyncClient().chat.completions.create(provider=FakeGpt) stream=True", "... stream=True"),
    ("RetryProvider", "RetryProvider([FakeGpt]) in each driver above¹"),
    ("IterListProvider", "IterListProvider([FakeGpt]) in each driver above¹"),
    ("RotatedProvider", "RotatedProvider([FakeGpt]) in each driver above¹"),
    ("Client(provider=FakeGpt).models.get_all()", "Client(provider=FakeGpt).models.get_all()"),
    ("live counter", "``FakeGpt.live`` counted by g4f"),
    ("sync drivers inside a running event loop", "sync drivers inside a running event loop"),
    ("jupyter:ChatCompletion.create in the kernel", "Jupyter kernel, no nest_asyncio: ChatCompletion.create (plain, stream)"),
    ("jupyter:Client in the kernel", "Jupyter kernel, no nest_asyncio: Client (plain, stream)"),
    ("lookups resolve to fakegpt.FakeGpt", "by-name lookups give fakegpt.FakeGpt after register()"),
    ("register() before g4f is imported", "register() before g4f is imported"),
    ("one login per process", "one login per process"),
    ("fakegpt without g4f", "fakegpt imports no g4f"),
]


def rows_of(report_dir, version):
    rows = []
    for name in ("entry-points", "register-first", "jupyter"):
        path = os.path.join(report_dir, f"{name}-{version}.json")
        with open(path, encoding="utf-8") as f:
            for entry, mode, status, detail in json.load(f)["rows"]:
                rows.append(("jupyter:" + entry if name == "jupyter" else entry, mode, status, detail))
    return rows


def cell(rows, key):
    if key in ("RetryProvider", "IterListProvider", "RotatedProvider"):
        mine = [r for r in rows if f" with {key}(" in r[0] or r[0] == f"{key}([FakeGpt])"]
    else:
        mine = [r for r in rows if r[0] == key]
    if not mine or any(r[2] == "fail" for r in mine):
        return "FAILED" if mine else "missing"
    if all(r[2] == "n/a" for r in mine):
        return "n/a"
    if all(r[2] == "pass" for r in mine):
        return "✓"
    skipped = sorted({r[0].split(" with ")[0] if " with " in r[0] else r[1] for r in mine if r[2] == "n/a"})
    if skipped == ["class"]:
        return "✓ after register()²"
    return "✓ (n/a: " + ", ".join(skipped) + ")"


def main(report_dir, versions):
    rows = {version: rows_of(report_dir, version) for version in versions}
    lines = [".. list-table::", "   :header-rows: 1", "", "   * - entry point (by class and by name)"]
    lines += [f"     - {version}" for version in versions]
    for key, title in ROWS:
        lines.append(f"   * - {title}")
        lines += [f"     - {cell(rows[version], key)}" for version in versions]
    print("\n".join(lines))
    totals = {v: (sum(r[2] == "pass" for r in rows[v]), sum(r[2] == "fail" for r in rows[v])) for v in versions}
    print("\n" + ", ".join(f"{v}: {p} checks passed, {f} failed" for v, (p, f) in totals.items()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
