# wave-lightning on GPUs: training runs (one GPU, DDP) and sweep workers, from the official
# PyTorch CUDA runtime image (its torch is kept; the package and its other dependencies are added).
#
#   docker build -t wave-lightning .
#   docker run --rm --init --gpus all --ipc=host -v "$PWD/runs:/work/runs" -v /srv/datasets:/data \
#       wave-lightning fit --config conf/experiment/copy_wrnn.yaml --config conf/trainer/gpu.yaml
#   docker run --rm --init --gpus '"device=0"' wave-lightning sweep worker sweeps/FILE.yaml
#
# The entry point is `wave-lightning`; the working directory /work holds conf/ and sweeps/
# (mount your own over them to change them) and runs/ (mount it to keep the results). Data sets
# are read from /data (WAVE_LIGHTNING_DATA_DIR). `docker stop -t 120` gives a run time to
# finish its step and write checkpoints/preempted.ckpt (SIGTERM), to resume with --ckpt_path last.
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WAVE_LIGHTNING_DATA_DIR=/data

WORKDIR /opt/wave-lightning
COPY pyproject.toml README.md ./
COPY wave_lightning ./wave_lightning
# pin torch to the image's build so that pip neither replaces it nor picks a torchvision for
# another torch
RUN TORCH="$(python -c 'import torch; print(torch.__version__.split("+")[0])')" \
    && pip install ".[postgres,tensorboard]" "torch==${TORCH}" \
    && python -c "import torch, torchvision, wave_lightning; print('torch', torch.__version__)"

WORKDIR /work
COPY conf ./conf
COPY sweeps ./sweeps

ENTRYPOINT ["wave-lightning"]
CMD ["--help"]
