#!/usr/bin/env bash
# Downloads the two models and the_cauldron subsets into ./model and ./data (relative to the current directory).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash download_resource.sh [--hf] [SUBSET ...]

Run from the repo root. Downloads into the current directory:
  model/Qwen3-0.6B                    <- Qwen/Qwen3-0.6B
  model/SmolVLM2-256M-Video-Instruct  <- HuggingFaceTB/SmolVLM2-256M-Video-Instruct
  data/the_cauldron/<SUBSET>/         <- the_cauldron subsets; default: the 21 that train_data=all uses (~169 GB)

Options:
  --hf        use the Hugging Face hub CLI (`hf`) instead of ModelScope (`modelscope`); same as USE_HF=1
  -h, --help  show this help

Finished downloads get a .complete marker and are skipped when re-run.
Example: bash download_resource.sh cocoqa    # models + cocoqa only (~2.4 GB)
EOF
}

# Keep in sync with data.ALL_SUBSETS.
ALL_SUBSETS=(chartqa finqa aokvqa figureqa diagram_image_to_text geomverse ai2d iam infographic_vqa intergps
  hateful_memes clevr iconqa multihiertt mapqa datikz hitab chart2text cocoqa docvqa dvqa)

use_hf=${USE_HF:-0}
subsets=()
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --hf) use_hf=1 ;;
    -*) echo "error: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) subsets+=("$arg") ;;
  esac
done
((${#subsets[@]})) || subsets=("${ALL_SUBSETS[@]}")
for subset in "${subsets[@]}"; do
  if [[ " ${ALL_SUBSETS[*]} " != *" $subset "* ]]; then
    echo "warning: $subset is not one of the subsets train_data=all uses (${ALL_SUBSETS[*]}); downloading it anyway" >&2
  fi
done

if [[ $use_hf == 1 ]]; then
  cli=hf cauldron=HuggingFaceM4/the_cauldron install="pip install -U huggingface_hub"
else
  cli=modelscope cauldron=AI-ModelScope/the_cauldron install="pip install modelscope"
fi
if ! command -v "$cli" >/dev/null; then
  echo "error: '$cli' command not found; install it with: $install" >&2
  exit 1
fi

# fetch DEST EXPECTED ARGS...: runs `$cli download ARGS...` unless DEST is complete; DEST/EXPECTED (a glob) must exist after.
fetch() {
  local dest=$1 expected=$2
  shift 2
  if [[ -f $dest/.complete ]]; then
    echo "skip $dest (already complete)"
    return
  fi
  echo "downloading $dest"
  "$cli" download "$@"
  if ! compgen -G "$dest/$expected" >/dev/null; then
    echo "error: no $expected in $dest after download; is the name right?" >&2
    exit 1
  fi
  touch "$dest/.complete"
}

fetch model/Qwen3-0.6B config.json Qwen/Qwen3-0.6B --local-dir model/Qwen3-0.6B
fetch model/SmolVLM2-256M-Video-Instruct config.json \
  HuggingFaceTB/SmolVLM2-256M-Video-Instruct --local-dir model/SmolVLM2-256M-Video-Instruct

for subset in "${subsets[@]}"; do
  fetch "data/the_cauldron/$subset" '*.parquet' \
    "$cauldron" --repo-type dataset --include "$subset/*" --local-dir data/the_cauldron
done
echo "done: model/ and data/the_cauldron/ (${subsets[*]})"
