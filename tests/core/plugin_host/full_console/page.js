// The full test plugin's console page: draws one line (tests/core/console reads it back).
export default function mount(element, console) {
  element.textContent = `full plugin page (${console.lang})`;
}
