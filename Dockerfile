# brainxai service image (CPU). Build: docker build -t brainxai .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    BRAINXAI_DATA_DIR=/var/lib/brainxai BRAINXAI_DICOM_HOST=0.0.0.0 \
    BRAINXAI_HTTP_HOST=0.0.0.0 OMP_NUM_THREADS=2

# CPU-only PyTorch from the PyTorch CPU index (no CUDA libraries in the image).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/brainxai
COPY pyproject.toml README.md ./
COPY vocabulary ./vocabulary
COPY inference ./inference
COPY explain ./explain
COPY dicom_io ./dicom_io
COPY plugin ./plugin
COPY models ./models
# Editable install: the bundled model is found at <repo>/models beside the packages.
RUN pip install -e . && useradd --system --home /var/lib/brainxai brainxai \
    && mkdir -p /var/lib/brainxai && chown brainxai /var/lib/brainxai

USER brainxai
EXPOSE 11112 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["brainxai", "serve"]
