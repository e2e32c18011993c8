// PartyStoreWidget's front-end entry (bundled by esbuild into static/widget.js): anywidget
// renders one Grid per view of the widget. The protocol with the kernel is in ./protocol,
// the rendering and editing in ./grid.
import { Grid, type Model } from "./grid";

export default {
  render({ model, el }: { model: Model; el: HTMLElement }) {
    const grid = new Grid(model, el);
    return () => grid.destroy();
  },
};
