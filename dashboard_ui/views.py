"""The dashboard page view: staff only; everything live comes from the public APIs."""
from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@staff_member_required(login_url="/accounts/login/")
@ensure_csrf_cookie
def dashboard(request):
    return render(request, "dashboard_ui/dashboard.html")
