"""The app: layout and callbacks (ui), inference service (service), image
input (images), Swin views (views, panels)."""
