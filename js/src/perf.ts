// dsnotebook perf panel (placeholder while it is being written).
import type { Render } from "@anywidget/types";

const render: Render = ({ el }) => {
  const d = document.createElement("div");
  d.className = "dsn-perf";
  d.textContent = "dsnotebook perf panel";
  el.appendChild(d);
};

export default { render };
