"""The plugin framework; its names are exported by `starling.plugins`: what a
plugin is (`Plugin`, `PluginContext`, `ConfigKey`, `PluginInfo`), the registry
that loads and unloads them (`PluginRegistry`, the seed's catalogue), config
values, the store tables plugins keep, the persisted active set and configs,
entry-point discovery, and what several plugins share (background tasks, the
HTTP sink of web hooks and rule resources, the node's process metrics)."""
