"""A form/survey collector for a static site.

Put examples/survey.html on any static host with its form's action set to the write URL (CORS is
open, so fetch() from any origin works too). Answers are validated by the responder; the read
URL serves the tally. The write key's rate limit (100/s, bursts of 1,000 by default) keeps a
runaway script from flooding the hook.
"""

from webreducer import Response

CHOICES = ("love it", "like it", "meh")


def responder(request, secrets):
    answer = request.body if isinstance(request.body, dict) else {}
    if answer.get("rating") not in CHOICES:
        return Response({"error": f"rating must be one of {', '.join(CHOICES)}"}, status=422)
    if len(answer.get("comment", "")) > 500:
        return Response({"error": "comment is limited to 500 characters"}, status=422)
    if request.headers.get("Accept", "").startswith("text/html"):
        return Response("<p>Thanks for your answer!</p>", headers={"Content-Type": "text/html"})
    return {"thanks": True}


def reducer(state, request, secrets):
    state = state or {"tally": {choice: 0 for choice in CHOICES}, "comments": [], "answers": 0}
    answer = request.body
    state["tally"][answer["rating"]] += 1
    state["answers"] += 1
    if answer.get("comment"):
        state["comments"] = (state["comments"] + [answer["comment"]])[-20:]
    return state
