// The report of "FIS Compare (A/B fidelity)" on the node: the text the node sends as its UI output ({"text": [...]})
// after each run, in a read-only box under the widgets (the front end shows no text output of a custom node itself).
import { app } from "../../scripts/app.js";

const NODE_TYPE = "FISCompare";
const PLACEHOLDER = "Run the workflow: the fidelity of the accelerated run against the reference, and the speed-up, show here.";

app.registerExtension({
  name: "ComfyUI-FIS.CompareReport",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      const report = document.createElement("pre");
      report.className = "fis-compare-report";
      report.textContent = PLACEHOLDER;
      report.style.cssText = "margin:0;width:100%;height:100%;box-sizing:border-box;overflow:auto;padding:6px;"
        + "font:11px/1.4 monospace;white-space:pre-wrap;color:#d8dadf;background:#202225;border-radius:4px;user-select:text";
      const widget = this.addDOMWidget("fis_compare_report", "fis-compare-report", report, { serialize: false, hideOnZoom: false });
      widget.serialize = false;
      widget.computeLayoutSize = () => ({ minHeight: 150, minWidth: 360 });
      this.fisCompareReport = report;
      this.setSize([Math.max(this.size[0], 440), Math.max(this.size[1], this.computeSize()[1])]);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message, ...args) {
      const result = onExecuted?.apply(this, [message, ...args]);
      const text = message?.text;
      if (this.fisCompareReport && text) this.fisCompareReport.textContent = [].concat(text).join("\n");
      return result;
    };
  },
});
