// A test plugin's console page: shows the company's name through the console's API helper.
export default function mount(element, console) {
  const line = document.createElement("p");
  line.className = "board";
  element.append(line);
  console.api("GET", "/api/v1/auth/me").then((me) => {
    line.textContent = `${console.t("company")}: ${me.tenant.name} (${console.lang})`;
  });
  return () => line.remove();
}
