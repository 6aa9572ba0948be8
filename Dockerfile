# CPU image of hfsoup: `docker run --rm hfsoup merge user/a user/b --task mrpc`
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/hfsoup
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY hfsoup ./hfsoup
COPY recipes ./recipes
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 soup
USER 10001
WORKDIR /home/soup
ENTRYPOINT ["hfsoup"]
CMD ["--help"]
