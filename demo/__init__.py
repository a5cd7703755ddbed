"""The app: layout and callbacks (ui), inference service (service, batching,
cores, memory), image input (images), Swin views (views: the figures;
frames and colormap: painting them fast; panels: one selection's views)."""
