"""The report renders every measured figure: Markdown tables and the plot from one document."""

from stbench import render


def test_markdown_has_a_row_per_measurement_and_every_target(committed_results):
    md = render.markdown(committed_results)
    for t in committed_results["targets"]:
        assert t["target"] in md
    for r in committed_results["kernels"]:
        assert f"| {r['name']} | {r['frames']} |" in md
    for r in committed_results["overhead"]:
        assert f"| {r['frames']} | {r['wasm_ns_per_plugin_per_block']:.0f} |" in md
    for r in committed_results["realtime"]:
        assert f"| {r['frames']} | {r['deadline_us']:.0f} |" in md
    assert "![results](results.png)" in md


def test_markdown_says_why_the_realtime_run_is_missing(committed_results):
    doc = dict(committed_results, realtime=[], realtime_skipped="jackd not found (Debian package jackd2)")
    assert "Skipped: jackd not found" in render.markdown(doc)


def test_plot_is_a_png(committed_results, tmp_path):
    path = tmp_path / "results.png"
    render.plot(committed_results, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
