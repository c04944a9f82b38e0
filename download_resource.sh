#!/usr/bin/env bash
# Downloads the two models and the_cauldron subsets into ./model and ./data (relative to the current directory),
# or, with --bench, the benchmark datasets eval_bench.py reads offline into ./data/bench.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash download_resource.sh [--hf] [SUBSET ...] [--replay] [--preference] [--text-bench [TASK ...]]
       bash download_resource.sh --bench [TASK ...]

Run from the repo root. Downloads into the current directory:
  model/Qwen3-0.6B                    <- Qwen/Qwen3-0.6B
  model/SmolVLM2-256M-Video-Instruct  <- HuggingFaceTB/SmolVLM2-256M-Video-Instruct
  data/the_cauldron/<SUBSET>/         <- the_cauldron subsets; default: the 21 that train_data=all uses (~169 GB),
                                         none when only --replay / --preference / --text-bench are given
  data/text_replay/                   <- --replay: stage 2's text-only replay, ShareGPT-Chinese-English-90k
                                         (shareAI/..., AI-ModelScope/... on ModelScope; Apache-2.0), converted
                                         once by qwen3_smvl/data/text_replay.py to data/text_replay/sharegpt_zh_en.jsonl
  data/preference/                    <- --preference: stage dpo's preference pairs, openbmb/RLAIF-V-Dataset
                                         (~83k pairs; CC BY-NC 4.0) from the Hugging Face hub with `hf`,
                                         converted once by qwen3_smvl/data/rlaif_v.py to data/preference/rlaif_v.jsonl
  data/text_bench/<DATASET>/          <- --text-bench: the hub datasets of these lm-eval tasks (default:
                                         eval_bench.py --base_qwen's: mmlu ceval-valid gsm8k ifeval), from the
                                         Hugging Face hub with `hf` (set HF_ENDPOINT for a mirror); needs
                                         requirements-eval.txt installed (eval_bench.py names the datasets)

  with --bench, instead:
  data/bench/<hub dataset id>/        <- the split each lmms-eval TASK reads of its dataset (default: eval_bench.py's suite),
                                         from the Hugging Face hub (`hf`; HF_ENDPOINT picks a mirror)

Options:
  --hf        use the Hugging Face hub CLI (`hf`) instead of ModelScope (`modelscope`); same as USE_HF=1
  --bench     benchmark datasets for eval_bench.py instead of models and the_cauldron
  --replay    also fetch and convert the stage-2 text-only replay set
  --preference
              also fetch and convert RLAIF-V's preference pairs for dpo_train.yaml
  --text-bench [TASK ...]
              also fetch the text benchmarks' data; the words after it are lm-eval task names
  -h, --help  show this help

Finished downloads get a .complete marker and are skipped when re-run.
Example: bash download_resource.sh cocoqa    # models + cocoqa only (~2.4 GB)
         bash download_resource.sh --bench textvqa_val mmbench_cn_dev
EOF
}

# Keep in sync with the_cauldron.ALL_SUBSETS.
ALL_SUBSETS=(chartqa finqa aokvqa figureqa diagram_image_to_text geomverse ai2d iam infographic_vqa intergps
  hateful_memes clevr iconqa multihiertt mapqa datikz hitab chart2text cocoqa docvqa dvqa)

# lmms-eval task -> "hub dataset id" and the files of the split the task reads (its YAML's dataset_name and
# test_split, as the dataset's README `configs` list them), fetched with the README: not the other configs nor the
# train shards (several GB for DocVQA and TextVQA) nor extra files such as MMStar.tsv; eval_bench.py passes the
# same split's files to `datasets`. Keep in sync with eval_bench.DEFAULT_SUITE (tests/test_download_bench.py
# fetches from a stand-in hub in the real layouts and scores every task on what it fetched).
declare -A BENCH_DATASETS=(
  [textvqa_val]="lmms-lab-encoder/textvqa data/validation-*" [docvqa_val]="lmms-lab-encoder/DocVQA DocVQA/validation-*"
  [chartqa]="lmms-lab-encoder/ChartQA data/test-*" [ai2d]="lmms-lab-encoder/ai2d data/test-*"
  [ocrbench]="echo840/OCRBench data/test-*" [mmstar]="Lin-Chen/MMStar mmstar.parquet"
  [mmbench_en_dev_static]="lmms-lab-encoder/MMBench en/dev-*" [mmbench_cn_dev]="lmms-lab-encoder/MMBench cn/dev-*"
  [cmmmu_val]="lmms-lab-encoder/CMMMU data/val-*"
)
BENCH_SUITE=(textvqa_val docvqa_val chartqa ai2d ocrbench mmstar mmbench_en_dev_static mmbench_cn_dev cmmmu_val)

use_hf=${USE_HF:-0}
bench=0 subsets=() replay=0 preference=0 text_bench=0 text_tasks=()
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --hf) use_hf=1 ;;
    --bench) bench=1 ;;
    --replay) replay=1 ;;
    --preference) preference=1 ;;
    --text-bench) text_bench=1 ;;
    -*) echo "error: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) if ((text_bench)); then text_tasks+=("$arg"); else subsets+=("$arg"); fi ;;
  esac
done

if [[ $bench == 1 ]]; then
  tasks=("${subsets[@]}")
  ((${#tasks[@]})) || tasks=("${BENCH_SUITE[@]}")
  for task in "${tasks[@]}"; do  # every name checked before anything downloads
    if [[ -z ${BENCH_DATASETS[$task]+set} ]]; then
      echo "error: no download known for task $task (known: ${BENCH_SUITE[*]}); put its hub dataset under data/bench/<dataset id>/ yourself" >&2
      exit 2
    fi
  done
  if ! command -v hf >/dev/null; then
    echo "error: 'hf' command not found; install it with: pip install -U huggingface_hub" >&2
    exit 1
  fi
  for task in "${tasks[@]}"; do
    read -r repo split_files <<<"${BENCH_DATASETS[$task]}"
    dest=data/bench/$repo
    if [[ -f $dest/.complete.$task ]]; then
      echo "skip $task ($dest already complete)"
      continue
    fi
    echo "downloading $repo for $task"
    hf download "$repo" --repo-type dataset --local-dir "$dest" --include "$split_files" --include README.md
    if [[ -z $(find "$dest" -name '*.parquet' -print -quit) ]]; then
      echo "error: no parquet files in $dest after download; is the name right?" >&2
      exit 1
    fi
    touch "$dest/.complete.$task"
  done
  echo "done: data/bench/ (${tasks[*]}); evaluate with: python eval_bench.py --model DIR --tasks $(IFS=,; echo "${tasks[*]}")"
  exit 0
fi

((${#subsets[@]} || replay || preference || text_bench)) || subsets=("${ALL_SUBSETS[@]}")
for subset in "${subsets[@]}"; do
  if [[ " ${ALL_SUBSETS[*]} " != *" $subset "* ]]; then
    echo "warning: $subset is not one of the subsets train_data=all uses (${ALL_SUBSETS[*]}); downloading it anyway" >&2
  fi
done

if [[ $use_hf == 1 ]]; then
  cli=hf cauldron=HuggingFaceM4/the_cauldron replay_repo=shareAI/ShareGPT-Chinese-English-90k
  install="pip install -U huggingface_hub"
else
  cli=modelscope cauldron=AI-ModelScope/the_cauldron replay_repo=AI-ModelScope/ShareGPT-Chinese-English-90k
  install="pip install modelscope"
fi
if ! command -v "$cli" >/dev/null; then
  echo "error: '$cli' command not found; install it with: $install" >&2
  exit 1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-$here/.venv/bin/python}
[[ -x $python ]] || python=python3
if ((preference)) && ! command -v hf >/dev/null; then  # refused before anything is downloaded
  echo "error: --preference downloads from the Hugging Face hub; 'hf' command not found; install it with: pip install -U huggingface_hub" >&2
  exit 1
fi
text_datasets=()
if ((text_bench)); then  # refused here, before anything is downloaded: an unknown task, lm-eval missing, no hf
  if ! command -v hf >/dev/null; then
    echo "error: --text-bench downloads from the Hugging Face hub; 'hf' command not found; install it with: pip install -U huggingface_hub" >&2
    exit 1
  fi
  listed=$("$python" "$here/eval_bench.py" --print_text_datasets ${text_tasks[@]+--text_tasks "$(IFS=,; echo "${text_tasks[*]}")"}) || exit 1
  mapfile -t text_datasets <<<"$listed"
fi

# fetch DEST EXPECTED ARGS...: runs `$cli download ARGS...` unless DEST is complete; DEST/EXPECTED (a glob) must exist after.
fetch() {
  fetch_with "$cli" "$@"
}

fetch_with() {
  local cli=$1 dest=$2 expected=$3
  shift 3
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

if ((replay)); then
  fetch data/text_replay/ShareGPT-Chinese-English-90k 'sharegpt_jsonl/*.jsonl' \
    "$replay_repo" --repo-type dataset --local-dir data/text_replay/ShareGPT-Chinese-English-90k
  [[ -f data/text_replay/sharegpt_zh_en.jsonl ]] ||
    PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m qwen3_smvl.data.text_replay data/text_replay/ShareGPT-Chinese-English-90k data/text_replay/sharegpt_zh_en.jsonl
fi

if ((preference)); then
  # the shards and the README (its licence), not .gitattributes nor anything the repo may gain
  fetch_with hf data/preference/RLAIF-V-Dataset '*.parquet' openbmb/RLAIF-V-Dataset --repo-type dataset \
    --include '*.parquet' --include README.md --local-dir data/preference/RLAIF-V-Dataset
  # a shard the converter cannot read unmarks the download, so the next run fetches what the user deleted
  [[ -f data/preference/rlaif_v.jsonl ]] ||
    PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m qwen3_smvl.data.rlaif_v data/preference/RLAIF-V-Dataset \
      data/preference/rlaif_v.jsonl || { rm -f data/preference/RLAIF-V-Dataset/.complete; exit 1; }
fi

for dataset in ${text_datasets[@]+"${text_datasets[@]}"}; do
  fetch_with hf "data/text_bench/$dataset" '*' "$dataset" --repo-type dataset --local-dir "data/text_bench/$dataset"
done
if [[ " ${text_datasets[*]} " == *" google/IFEval "* ]]; then  # ifeval's checks split sentences with nltk's punkt_tab
  "$python" -c "import nltk; nltk.data.find('tokenizers/punkt_tab')" 2>/dev/null ||
    "$python" -c "import nltk; nltk.download('punkt_tab', quiet=True)"
fi

fetched=("${subsets[@]/#/the_cauldron/}")
((replay)) && fetched+=(text_replay)
((preference)) && fetched+=(preference)
((${#text_datasets[@]})) && fetched+=("${text_datasets[@]/#/text_bench/}")
echo "done: model/ and data/ (${fetched[*]})"
