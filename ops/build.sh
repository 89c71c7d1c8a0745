#!/usr/bin/env bash
# Run the tests, then build the image for linux/amd64 and linux/arm64 with
# docker buildx and push it to ECR. See README.md, "Deployment".
set -euo pipefail

usage() {
    cat <<'EOF'
usage: ops/build.sh [--dry-run]

Runs `make test`, makes sure the ECR repository exists (immutable tags, scan
on push), logs docker in to ECR, and builds and pushes a multi-arch image.

Required:  AWS_REGION, AWS_ACCOUNT_ID
Optional:  ECR_REPOSITORY  (document-vault)
           IMAGE_TAG       (the current commit, 12 hex digits; the tree must be clean)
           PLATFORMS       (linux/amd64,linux/arm64)
           BUILDER         (vault-multiarch; a docker-container buildx builder)
           ENV_FILE        (NAME=value file read first; its values win)
           DRY_RUN=1       (same as --dry-run: print the commands, run nothing)
EOF
}

# shellcheck source=ops/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dry_run_flag=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run_flag=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $arg" ;;
    esac
done

load_env_file
normalise_dry_run
[[ "$dry_run_flag" == 0 ]] || DRY_RUN=1

absent="$(missing AWS_REGION AWS_ACCOUNT_ID)"
[[ -z "$absent" ]] || die "missing required variable(s): $absent (set them in the environment or in ENV_FILE; see --help)"
[[ "$AWS_ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || die "AWS_ACCOUNT_ID: expected 12 digits, got '$AWS_ACCOUNT_ID'"

ECR_REPOSITORY="${ECR_REPOSITORY:-document-vault}"
PLATFORMS="${PLATFORMS:-linux/amd64,linux/arm64}"
BUILDER="${BUILDER:-vault-multiarch}"
if [[ -z "${IMAGE_TAG:-}" ]]; then
    need_commands git
    IMAGE_TAG="$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null)" \
        || die "IMAGE_TAG: not set, and $REPO_ROOT has no git commit to take it from"
    [[ -z "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ]] \
        || die "IMAGE_TAG: not set, and the working tree has uncommitted changes (commit them, or set IMAGE_TAG)"
fi
REGISTRY="$AWS_ACCOUNT_ID.dkr.ecr.$AWS_REGION.amazonaws.com"
IMAGE="$REGISTRY/$ECR_REPOSITORY:$IMAGE_TAG"

note "image:     $IMAGE"
note "platforms: $PLATFORMS (buildx builder $BUILDER)"
note "steps:     make test; ECR repository; docker login; buildx build --push"
if [[ "$DRY_RUN" == 1 ]]; then
    note "dry run: printing the commands, running none of them"
else
    need_commands make aws docker
fi

cd "$REPO_ROOT"
run make test || die "the tests failed; nothing was built or pushed"

describe=(aws ecr describe-repositories --region "$AWS_REGION" --repository-names "$ECR_REPOSITORY")
create=(aws ecr create-repository --region "$AWS_REGION" --repository-name "$ECR_REPOSITORY"
    --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true)
printf '+ %s >/dev/null || %s\n' "$(quoted "${describe[@]}")" "$(quoted "${create[@]}")"
if [[ "$DRY_RUN" != 1 ]] && ! "${describe[@]}" >/dev/null 2>&1; then
    "${create[@]}" >/dev/null
fi

password=(aws ecr get-login-password --region "$AWS_REGION")
login=(docker login --username AWS --password-stdin "$REGISTRY")
printf '+ %s | %s\n' "$(quoted "${password[@]}")" "$(quoted "${login[@]}")"
if [[ "$DRY_RUN" != 1 ]]; then
    "${password[@]}" | "${login[@]}" >/dev/null
fi

inspect=(docker buildx inspect "$BUILDER")
create_builder=(docker buildx create --name "$BUILDER" --driver docker-container --bootstrap)
printf '+ %s >/dev/null || %s\n' "$(quoted "${inspect[@]}")" "$(quoted "${create_builder[@]}")"
if [[ "$DRY_RUN" != 1 ]] && ! "${inspect[@]}" >/dev/null 2>&1; then
    "${create_builder[@]}" >/dev/null
fi

run docker buildx build --builder "$BUILDER" --platform "$PLATFORMS" \
    --label "org.opencontainers.image.version=$IMAGE_TAG" \
    --tag "$IMAGE" --push "$REPO_ROOT"

if [[ "$DRY_RUN" == 1 ]]; then
    note "dry run: nothing was built or pushed"
else
    note "pushed $IMAGE"
    note "deploy it with: IMAGE_URI=$IMAGE ops/deploy.sh"
fi
