"""Write the subgraph blueprint ``subgraphs/Wan 2.2 A14B 4-step sampler (FIS).json``: Wan 2.2 A14B's two experts sampled
in 4 steps with FIS on each, as one node (the host serves a pack's ``subgraphs/*.json`` to the node library's
"Subgraph Blueprints"). It is made by the host's own front end, as a user makes one: the T2V example workflow opened
in headless Chromium, its FIS, ModelSamplingSD3 and sampler nodes converted to a subgraph, the subgraph published.

    python scripts/make_blueprint.py      # needs the host, Playwright and Chromium (scripts/dev_setup.py)
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from host_path import PACK_ROOT, find_comfyui

sys.path.insert(0, str(PACK_ROOT / "tests"))
from comfy_server import ComfyServer  # noqa: E402

#: The blueprint's name in the node library and its search: its file name.
NAME = "Wan 2.2 A14B 4-step sampler (FIS)"
WORKFLOW = PACK_ROOT / "workflows" / "wan22_a14b_t2v_4step_fis.json"
DESCRIPTION = ("Wan 2.2 A14B in 4 steps: the high-noise expert samples steps 0-2 and the low-noise expert steps 2-4, "
               "each through Frame Interleaved Sparsity (balanced: 2.9x per step at 720p) and ModelSamplingSD3 (shift "
               "5). Connect each expert's model (after its lightx2v 4-step LoRA), the prompts and the latent "
               "(Empty latent for T2V, WanImageToVideo for I2V); decode the latent it returns.")
#: In the workflow: per expert (loader, FIS, LoRA, ModelSamplingSD3), and the two samplers.
EXPERTS, SAMPLERS = ((1, 2, 3, 4), (5, 6, 7, 8)), (14, 15)
CONVERT = """([experts, samplers, description]) => {
  const graph = app.graph, byId = (id) => graph.getNodeById(id);
  for (const [loader, fis, lora, sampling] of experts) {   // loader -> LoRA -> FIS: the LoRA stays outside
    byId(loader).connect(0, byId(lora), 0);
    byId(lora).connect(0, byId(fis), 0);
    byId(fis).connect(0, byId(sampling), 0);
  }
  const inside = experts.flatMap(([, fis, , sampling]) => [fis, sampling]).concat(samplers);
  const { node } = graph.convertToSubgraph(new Set(inside.map(byId)));
  const subgraph = node.subgraph;
  subgraph.renameInput(subgraph.inputs[0], "high_noise_model");
  subgraph.renameInput(subgraph.inputs[1], "low_noise_model");
  subgraph.renameOutput(subgraph.outputs[0], "latent");
  subgraph.description = description;
  app.canvas.deselectAll();
  app.canvas.selectNode(node);
}"""


def main():
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory() as base, ComfyServer(find_comfyui(), Path(base)) as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.goto(server.url)
        page.wait_for_function("window.app?.vueAppReady && app.graph?._nodes?.length > 0", timeout=90_000)
        page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", json.loads(WORKFLOW.read_text()))
        page.evaluate(CONVERT, [EXPERTS, SAMPLERS, DESCRIPTION])
        page.evaluate("() => { app.extensionManager.command.execute('Comfy.PublishSubgraph'); }")  # asks for a name
        page.get_by_role("dialog").locator("input").fill(NAME)
        page.keyboard.press("Enter")
        published = Path(base) / "user" / "default" / "subgraphs" / f"{NAME}.json"
        for _ in range(100):
            if published.is_file():
                break
            page.wait_for_timeout(100)
        browser.close()
        blueprint = json.loads(published.read_text())
    path = PACK_ROOT / "subgraphs" / f"{NAME}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(blueprint, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(PACK_ROOT)}")


if __name__ == "__main__":
    main()
