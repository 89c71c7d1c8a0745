#!/usr/bin/env bash
# Render ops/ecs-task-def.json.template, register it with ECS, then roll an
# ECS service onto it or run it once as a Fargate task. See README.md, "Deployment".
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ops/deploy.sh [--dry-run] [service | run-task]

service (default)  register the task definition, point SERVICE at it and wait
                   until the service is stable
run-task           register the task definition and start one Fargate task

Required:  CLUSTER, and SERVICE (service) or SUBNET_IDS and SECURITY_GROUP_IDS
           (run-task; comma-separated; SUBNET_ID / SECURITY_GROUP_ID also work),
           and the template's: IMAGE_URI, AWS_REGION, ENVIRONMENT, LOG_GROUP_NAME,
           ECS_EXECUTION_ROLE_ARN, ECS_TASK_ROLE_ARN, DATABASE_URL_SECRET_ARN,
           JWT_PUBLIC_KEY_SECRET_ARN, LEDGER_SIGNING_KEY_SECRET_ARN,
           DOCUMENT_VAULT_BUCKET, AWS_S3_KMS_KEY_ID
Optional:  every other variable of .env.example (unset: the service's default),
           TASK_FAMILY (document-vault), TASK_CPU (1024), TASK_MEMORY (2048),
           CPU_ARCHITECTURE (X86_64 or ARM64), ASSIGN_PUBLIC_IP (DISABLED; run-task),
           ENV_FILE (NAME=value file read first; its values win),
           DRY_RUN=1 (same as --dry-run: render and print, call nothing)
EOF
}

# shellcheck source=ops/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dry_run_flag=0
mode=service
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run_flag=1 ;;
        service | run-task) mode="$arg" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

load_env_file
normalise_dry_run
[[ "$dry_run_flag" == 0 ]] || DRY_RUN=1
need_python

SUBNET_IDS="${SUBNET_IDS:-${SUBNET_ID:-}}"
SECURITY_GROUP_IDS="${SECURITY_GROUP_IDS:-${SECURITY_GROUP_ID:-}}"
if [[ "$mode" == service ]]; then
    script_needs=(CLUSTER SERVICE)
else
    script_needs=(CLUSTER SUBNET_IDS SECURITY_GROUP_IDS)
fi
template_missing="$(python3 "$RENDERER" --list-missing)" || die "cannot read the task definition template"
absent="$(missing "${script_needs[@]}")"
absent="${absent:+$absent }$template_missing"
absent="${absent% }"
[[ -z "$absent" ]] || die "missing required variable(s): $absent (set them in the environment or in ENV_FILE; see --help)"

TASK_FAMILY="${TASK_FAMILY:-document-vault}"
ASSIGN_PUBLIC_IP="${ASSIGN_PUBLIC_IP:-DISABLED}"
[[ "$ASSIGN_PUBLIC_IP" == ENABLED || "$ASSIGN_PUBLIC_IP" == DISABLED ]] \
    || die "ASSIGN_PUBLIC_IP: expected ENABLED or DISABLED, got '$ASSIGN_PUBLIC_IP'"

rendered="$(mktemp "${TMPDIR:-/tmp}/ecs-task-def.XXXXXX")"
trap 'rm -f "$rendered"' EXIT
python3 "$RENDERER" --output "$rendered" || die "the task definition was not rendered (see above)"

note "region:     $AWS_REGION"
note "cluster:    $CLUSTER"
note "image:      $IMAGE_URI"
note "task:       $TASK_FAMILY (ENVIRONMENT=$ENVIRONMENT)"
if [[ "$mode" == service ]]; then
    note "then:       update service $SERVICE and wait until it is stable"
else
    note "then:       run one Fargate task in subnets $SUBNET_IDS, security groups $SECURITY_GROUP_IDS"
fi
if [[ "$DRY_RUN" == 1 ]]; then
    note "dry run: the task definition it would register:"
    cat "$rendered"
    note "dry run: printing the commands, running none of them"
else
    need_commands aws
fi

register=(aws ecs register-task-definition --region "$AWS_REGION"
    --cli-input-json "file://$rendered"
    --query taskDefinition.taskDefinitionArn --output text)
show "${register[@]}"
if [[ "$DRY_RUN" == 1 ]]; then
    task_definition="$TASK_FAMILY"
else
    task_definition="$("${register[@]}")"
    note "registered $task_definition"
fi

if [[ "$mode" == service ]]; then
    run aws ecs update-service --region "$AWS_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
        --task-definition "$task_definition" --query service.serviceArn --output text
    run aws ecs wait services-stable --region "$AWS_REGION" --cluster "$CLUSTER" --services "$SERVICE"
    [[ "$DRY_RUN" == 1 ]] || note "service $SERVICE is stable on $task_definition"
else
    network="awsvpcConfiguration={subnets=[$SUBNET_IDS],securityGroups=[$SECURITY_GROUP_IDS],assignPublicIp=$ASSIGN_PUBLIC_IP}"
    run_task=(aws ecs run-task --region "$AWS_REGION" --cluster "$CLUSTER" --launch-type FARGATE
        --count 1 --task-definition "$task_definition" --network-configuration "$network"
        --query '[tasks[0].taskArn, failures[0].reason]' --output text)
    show "${run_task[@]}"
    if [[ "$DRY_RUN" != 1 ]]; then
        read -r task_arn failure <<<"$("${run_task[@]}")"
        [[ "$task_arn" == arn:* ]] || die "ECS started no task: ${failure:-no reason given}"
        note "started $task_arn"
    fi
fi
[[ "$DRY_RUN" != 1 ]] || note "dry run: nothing was registered or changed"
