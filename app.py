"""Inside the Classifier: `python app.py` serves the app (also on Hugging Face Spaces).

The app is built in demo/ui.py; host and port follow GRADIO_SERVER_NAME and
GRADIO_SERVER_PORT (default 127.0.0.1:7860), the other settings APP_* (see
demo/service.py).
"""
from demo.ui import build_demo, serve

demo = build_demo()

if __name__ == "__main__":
    serve(demo)
