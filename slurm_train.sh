#!/bin/bash
# Multi-node training under SLURM that survives its time limit and preemption:
#
#   sbatch slurm_train.sh stage2_full.yaml [--key value ...]     # from the repository root
#   ACCELERATE_CONFIG=accelerate_configs/ddp.yaml sbatch --nodes 4 slurm_train.sh full_train.yaml
#
# One task per node runs `accelerate launch`, which starts one rank per GPU of the node. Five minutes
# before the time limit SLURM sends SIGUSR1 to this script (--signal=B:...), which passes it on to
# every process of the job; train.py finishes its optimizer step, all ranks save one complete
# checkpoint there and exit, and this script requeues the job: its next start runs the same command,
# which resumes from that checkpoint. Preempted jobs get SIGTERM, handled the same way, and SLURM
# requeues them itself (--requeue). output_dir must be on a filesystem every node sees.
#SBATCH --job-name=qwen3-smvl
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -u
CONFIG=${1:?usage: sbatch slurm_train.sh CONFIG.yaml [--key value ...]}
shift
export ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-accelerate_configs/fsdp2.yaml}
export ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
export MAIN_PROCESS_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29500}
export NUM_PROCESSES=$((SLURM_NNODES * ${SLURM_GPUS_ON_NODE:-8}))
# The launchers pass SIGUSR1 on to their ranks (torchrun passes SIGTERM and SIGINT by default), then
# wait this long for them to save before they kill them.
export PET_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1
export PET_SHUTDOWN_TIMEOUT=${PET_SHUTDOWN_TIMEOUT:-280}

requeue=0
on_time_limit() {
    [ "$requeue" = 1 ] && return
    requeue=1
    echo "slurm_train.sh: time limit near: asking the run to checkpoint and stop"
    scancel --signal=USR1 "$SLURM_JOB_ID"  # every process of the job's steps, not this script
}
trap on_time_limit USR1
trap 'echo "slurm_train.sh: SIGTERM: the run saves a checkpoint and stops"' TERM

srun --kill-on-bad-exit=0 bash -c 'exec "$ACCELERATE" launch --config_file "$ACCELERATE_CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes "$NUM_PROCESSES" --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT" train.py "$@"' launch "$CONFIG" "$@" &
run=$!
status=0
wait "$run" || status=$?
while kill -0 "$run" 2>/dev/null; do  # a trapped signal ends `wait` early: wait for the run itself
    status=0
    wait "$run" || status=$?
done

if [ "$requeue" = 1 ] && [ "$status" != 0 ]; then
    echo "slurm_train.sh: requeueing job $SLURM_JOB_ID; its next start resumes from the checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
