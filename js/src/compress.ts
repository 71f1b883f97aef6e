// Entry of the compression panel's bundle (dsnotebook/widgets/static/compress.js).
import { render } from "./compress/view";

export default { render };
