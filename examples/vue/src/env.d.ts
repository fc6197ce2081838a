// Plain tsc cannot read .vue files: it sees App.vue as some component. The logic it should
// check lives in chat.ts.
declare module '*.vue' {
  import type { DefineComponent } from 'vue'

  const component: DefineComponent
  export default component
}
