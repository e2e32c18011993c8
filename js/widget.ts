// Placeholder front-end: replaced by the grid in the widget issue.
export default {
  render({ el }: { el: HTMLElement }) {
    el.textContent = "partywidget";
  },
};
