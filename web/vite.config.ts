import { defineConfig } from "vitest/config";

// The arena backend serves the build (one process, one port); `npm run dev` proxies the API.
export default defineConfig({
  base: "/",
  build: {
    outDir: "../src/vlarena/arena/web",
    emptyOutDir: true,
    chunkSizeWarningLimit: 2000,
  },
  optimizeDeps: { exclude: ["@mujoco/mujoco"] },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
  test: { environment: "node", include: ["tests/**/*.test.ts"] },
});
