"""bb_backoff.testing.Dataset: the mock's seeded workspace, its expected keys and call count."""

from __future__ import annotations

import statistics

import pytest

from bb_backoff.testing import Dataset, DatasetSize
from bb_backoff.testing._dataset import PULL_REQUEST_STATES

API = "https://api.bitbucket.org/2.0"
SMALL = DatasetSize(
    repositories=2,
    pull_requests=6,
    comments_per_pull_request=2,
    issues=5,
    comments_per_issue=1,
    members=3,
)


def test_the_same_seed_gives_the_same_dataset_and_another_seed_a_different_one() -> None:
    assert Dataset.generate(7, SMALL) == Dataset.generate(7, SMALL)
    assert Dataset.generate(7, SMALL) != Dataset.generate(8, SMALL)


def test_default_size_is_the_documented_one() -> None:
    assert DatasetSize() == DatasetSize(
        repositories=3,
        pull_requests=100,
        comments_per_pull_request=5,
        issues=40,
        comments_per_issue=3,
        members=12,
    )


def test_one_workspace_holds_the_sized_repositories_with_unique_slugs() -> None:
    dataset = Dataset.generate(0, SMALL)
    assert dataset.workspace == "acme"
    assert len(dataset.repositories) == 2
    assert [r.full_name for r in dataset.repositories] == [
        f"acme/{r.slug}" for r in dataset.repositories
    ]
    assert len({r.slug for r in dataset.repositories}) == 2
    assert dataset.repository(dataset.repositories[1].slug) is dataset.repositories[1]
    assert dataset.repository("no-such-repo") is None


def test_slugs_stay_unique_beyond_the_word_pairs() -> None:
    dataset = Dataset.generate(0, DatasetSize(repositories=300, pull_requests=0, issues=0))
    assert len({r.slug for r in dataset.repositories}) == 300


def test_pull_requests_and_issues_are_numbered_from_1_in_creation_order() -> None:
    for repository in Dataset.generate(3, SMALL).repositories:
        assert [pr.id for pr in repository.pull_requests] == list(range(1, 7))
        assert [issue.id for issue in repository.issues] == list(range(1, 6))
        created = [pr.created_on for pr in repository.pull_requests]
        assert created == sorted(created)
        assert created[0] > repository.created_on
        assert {pr.state for pr in repository.pull_requests} <= set(PULL_REQUEST_STATES)


def test_comment_ids_are_unique_within_a_repository_and_ascend_within_a_thread() -> None:
    for repository in Dataset.generate(1, SMALL).repositories:
        threads = [pr.comments for pr in repository.pull_requests]
        ids = [comment.id for comments in threads for comment in comments]
        assert len(ids) == len(set(ids))
        for comments in threads + [issue.comments for issue in repository.issues]:
            assert [c.id for c in comments] == sorted(c.id for c in comments)
            assert [c.created_on for c in comments] == sorted(c.created_on for c in comments)


def test_comment_counts_vary_between_zero_and_twice_the_mean_around_the_mean() -> None:
    size = DatasetSize(repositories=1, pull_requests=400, comments_per_pull_request=5, issues=0)
    counts = [len(pr.comments) for pr in Dataset.generate(0, size).repositories[0].pull_requests]
    assert min(counts) == 0
    assert max(counts) == 10
    assert statistics.mean(counts) == pytest.approx(5, abs=0.5)


def test_some_issues_have_a_milestone_and_some_have_none() -> None:
    size = DatasetSize(repositories=1, pull_requests=0, issues=60)
    repository = Dataset.generate(0, size).repositories[0]
    milestones = [issue.milestone for issue in repository.issues]
    assert None in milestones
    assert {m for m in milestones if m is not None} <= set(repository.milestones)
    assert 0.4 < sum(m is not None for m in milestones) / len(milestones) < 0.9


def test_the_user_is_the_first_of_the_members_whose_ids_are_unique() -> None:
    dataset = Dataset.generate(0, SMALL)
    assert dataset.user == dataset.members[0]
    assert len({m.account_id for m in dataset.members}) == 3
    assert all(m.account_id.startswith("557058:") for m in dataset.members)


def test_diffs_are_unified_diffs_mentioning_the_changed_files() -> None:
    pull_request = Dataset.generate(0, SMALL).repositories[0].pull_requests[0]
    lines = pull_request.diff.splitlines()
    assert lines[0].startswith("diff --git a/")
    assert any(line.startswith("@@ -") for line in lines)
    assert len(pull_request.source_hash) == len(pull_request.destination_hash) == 40


def test_payloads_carry_bitbuckets_type_fields_and_links_on_the_given_base() -> None:
    dataset = Dataset.generate(0, SMALL)
    repository = dataset.repositories[0]
    pull_request = repository.pull_requests[0]
    issue = repository.issues[0]

    repo_json = repository.to_json(API)
    assert (repo_json["type"], repo_json["full_name"]) == ("repository", repository.full_name)
    assert repo_json["links"]["self"]["href"] == f"{API}/repositories/{repository.full_name}"
    pr_json = repository.pull_request_json(pull_request, API)
    assert (pr_json["type"], pr_json["id"], pr_json["state"]) == (
        "pullrequest",
        1,
        pull_request.state,
    )
    assert pr_json["author"]["type"] == "user"
    assert pr_json["comment_count"] == len(pull_request.comments)
    assert pr_json["links"]["diff"]["href"] == (
        f"{API}/repositories/{repository.full_name}/pullrequests/1/diff"
    )
    issue_json = repository.issue_json(issue, "http://127.0.0.1:8000/2.0")
    assert issue_json["type"] == "issue"
    assert issue_json["links"]["self"]["href"] == (
        f"http://127.0.0.1:8000/2.0/repositories/{repository.full_name}/issues/1"
    )
    member = dataset.member_json(dataset.user, API)
    assert (member["type"], member["user"]["account_id"]) == (
        "workspace_membership",
        dataset.user.account_id,
    )


def test_an_issue_payload_carries_its_milestone_or_null() -> None:
    repository = Dataset.generate(0, DatasetSize(repositories=1, issues=30)).repositories[0]
    by_milestone = {issue.milestone is None: issue for issue in repository.issues}
    assert repository.issue_json(by_milestone[True], API)["milestone"] is None
    with_one = repository.issue_json(by_milestone[False], API)["milestone"]
    assert (with_one["type"], with_one["name"]) == ("milestone", by_milestone[False].milestone)


def test_expected_lists_every_key_an_import_ends_up_with() -> None:
    dataset = Dataset.generate(0, SMALL)
    expected = dataset.expected()
    repositories = dataset.repositories
    assert expected["repository"] == {(r.full_name,) for r in repositories}
    assert len(expected["pull_request"]) == len(expected["diff"]) == 2 * 6
    assert len(expected["issue"]) == 2 * 5
    assert len(expected["pull_request_comment"]) == sum(
        len(pr.comments) for r in repositories for pr in r.pull_requests
    )
    assert len(expected["issue_comment"]) == sum(
        len(issue.comments) for r in repositories for issue in r.issues
    )
    assert expected["member"] == {(m.account_id,) for m in dataset.members}
    first = repositories[0]
    assert (first.full_name, 1) in expected["pull_request"]
    comment = next(c for pr in first.pull_requests for c in pr.comments)
    assert any(key[2] == comment.id for key in expected["pull_request_comment"])


def test_requests_needed_follows_the_importer_flow_on_a_hand_counted_dataset() -> None:
    size = DatasetSize(
        repositories=1,
        pull_requests=2,
        comments_per_pull_request=0,
        issues=1,
        comments_per_issue=0,
        members=1,
    )
    # /user, the workspaces page, the workspace's repositories page, members
    # page, then for the repository: its GET, the pull-request page, per pull
    # request an (empty) comment page and the diff's two calls, the issue page,
    # and the issue's (empty) comment page.
    assert Dataset.generate(0, size).requests_needed() == 1 + 1 + 1 + 1 + 1 + 1 + 2 * 3 + 1 + 1


def test_requests_needed_counts_one_call_per_page() -> None:
    size = DatasetSize(
        repositories=1,
        pull_requests=120,
        comments_per_pull_request=0,
        issues=0,
        comments_per_issue=0,
        members=25,
    )
    dataset = Dataset.generate(0, size)
    fixed = 1 + 1 + 1 + 1 + 120 * 3 + 1  # /user, workspaces, repos, repo GET, per PR, issues
    # Pull-request listings stop at 50 a page even when 100 is asked for.
    assert dataset.requests_needed(pagelen=100) == fixed + 1 + 3
    assert dataset.requests_needed(pagelen=50) == fixed + 1 + 3
    assert dataset.requests_needed(pagelen=10) == fixed + 3 + 12


@pytest.mark.parametrize("pagelen", [0, 101, -1, 2.5, True])
def test_requests_needed_refuses_a_pagelen_the_api_would_refuse(pagelen: object) -> None:
    with pytest.raises(ValueError, match="pagelen"):
        Dataset.generate(0, SMALL).requests_needed(pagelen)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repositories", -1),
        ("pull_requests", 1.5),
        ("comments_per_issue", True),
        ("members", 0),
        ("issues", "3"),
    ],
)
def test_dataset_size_refuses_a_bad_count_naming_it(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DatasetSize(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seed", "size"),
    [
        ("1", None),
        (True, None),
        (0, {"repositories": 1}),
        (2**64 + 1, None),
        pytest.param(-(10**5000), None, id="5000-digits"),
    ],
)
def test_generate_refuses_a_bad_seed_or_size(seed: object, size: object) -> None:
    with pytest.raises(ValueError, match=r"seed|size"):
        Dataset.generate(seed, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [2**64, -(2**64)])
def test_a_seed_of_64_bits_either_way_is_taken_and_shown_in_full(seed: int) -> None:
    assert Dataset.generate(seed, DatasetSize(repositories=1, members=1)).seed == seed
