// dsnotebook rank x phase panel (distributed runs): per-rank step phases, the straggler score of
// each rank and the skew of each phase. The parts live in ranks/:
//   model.ts  the traits, cell shading and the straggler sentence (pure, tested)
//   view.ts   the DOM
import { render } from "./ranks/view";

export default { render };
